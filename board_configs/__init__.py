"""Board sysfs layouts as data (one TOML file per board); installed as ``edgeexit.board_configs``."""
