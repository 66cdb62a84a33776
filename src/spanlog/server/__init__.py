"""The spanlog collector: ingest, merge, store, index, search and serve logs.

Its packages are its layers (docs/design.md, "Layout"): ``http`` and ``commands`` use
``store``, which uses ``query`` and ``rows``; each imports only the layers below it.
"""
