"""The shared core: errors, config, files, the class table, the raster reader, the catalog, scenes, VRTs and the batch runner.

Everything else imports from here; nothing here imports a feature, the server, the CLI or the UI.
"""
