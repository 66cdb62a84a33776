"""Where rows are kept: the interface every engine implements and what it shares."""
