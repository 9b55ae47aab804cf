"""码上通 engine: configuration, app factory, channels, dialog, jobs, CLI."""
