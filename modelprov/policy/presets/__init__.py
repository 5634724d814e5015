"""Built-in policies, one TOML file each (`modelprov policy list`)."""
