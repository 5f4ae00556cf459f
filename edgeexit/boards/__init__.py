"""edgeexit.boards."""
