"""The PostgreSQL engine: one database for any number of collectors (``_store.py`` is the
engine)."""
