"""Where rows are kept: the interface every engine implements (``_engine.py``), what it
takes and returns, and the logic the engines share; the engines are ``sqlite/`` (the
default) and ``postgres/``."""
