"""edgeexit.bundle."""
