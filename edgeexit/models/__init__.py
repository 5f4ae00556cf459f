"""Bundled model bundles (the demo model lives in ``demo/``)."""
