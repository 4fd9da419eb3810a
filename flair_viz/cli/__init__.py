"""The ``flair-viz`` command line: ``main`` and the arguments shared by every command."""
