"""The row model: what a stored row is made of, how incoming pieces are checked and land on
it, and the collector's JSON. The bottom layer: it imports nothing else of the collector."""
