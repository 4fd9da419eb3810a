"""Predictions: model cards, checkpoints, sliding-window inference, batch jobs and live tiles.

Nothing here is imported at package level: torch loads only when a module that needs it is imported.
"""
