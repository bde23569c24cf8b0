"""A search's configuration: the schema (`schema`), its YAML text and overrides (`codec`), the presets (`presets`)
and the registry-backed sections (`sections`)."""
