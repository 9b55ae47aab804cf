"""The channel-neutral core every layer may use: events (Inbound), replies (Reply), notices,
settings, the clock, signed links."""
