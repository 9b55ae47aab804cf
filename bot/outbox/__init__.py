"""The outbox: what must reach a person later, kept until a channel's sender delivers it."""
