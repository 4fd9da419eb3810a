"""The shared core: one of each primitive every feature needs.

errors (conditions and the status table), config, atomic writes, the file lock (locks), file stamps,
safe names, the class table (classes) and the class-tile reader (classtile), the raster reader, the
catalog, scenes, the COG and VRT writers, uncertainty, and the batch runner (jobs).
Everything else imports from here; nothing here imports a feature, the server, the CLI or the UI.
"""
