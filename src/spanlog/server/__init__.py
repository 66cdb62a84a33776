"""The spanlog collector: ingest, merge, store, index, search and serve logs."""
