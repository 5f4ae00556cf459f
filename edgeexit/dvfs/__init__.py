"""edgeexit.dvfs."""
