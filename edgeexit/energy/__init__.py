"""edgeexit.energy."""
