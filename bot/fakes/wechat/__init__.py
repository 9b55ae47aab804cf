"""A fake WeChat: its API (token, customer-service messages, templates, media) and a client that signs callbacks as WeChat does."""
