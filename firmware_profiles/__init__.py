"""Operating points and power-model coefficients per board (TOML, every number sourced)."""
