"""The channel-neutral core: events, replies, people, the clock; what every layer may use."""
