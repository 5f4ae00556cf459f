"""edgeexit.sim."""
