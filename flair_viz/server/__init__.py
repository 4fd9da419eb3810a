"""The tile server: the titiler factory bound to the catalog, the app that wires the features, and how to run it."""
