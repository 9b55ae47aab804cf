"""A fake WeCom (企业微信): its API (token, app messages with the per-member limits, users,
sign-in codes, the OAuth and QR sign-in pages) and a client that signs and encrypts
callbacks as WeCom does."""
