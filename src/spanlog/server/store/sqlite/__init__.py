"""The SQLite engine: the default store, one file, zero setup (``_store.py`` is the engine)."""
