"""The collector's side of the ``spanlog`` command line (src/spanlog/cli.py) beyond serving:
``spanlog migrate`` (a SQLite store into PostgreSQL) and the table ``spanlog logs`` prints."""
