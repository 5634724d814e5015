"""Built-in policies, one TOML file each (`provenance policy list`)."""
