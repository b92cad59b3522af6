"""The configuration: TOML validated into frozen settings (``loader.load_settings`` -> ``settings.Settings``)."""
