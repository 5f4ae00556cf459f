"""edgeexit.policies."""
