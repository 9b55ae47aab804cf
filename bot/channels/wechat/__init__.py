"""The WeChat Official Account channel: its wire (signature, AES, XML, the 5-second rule), its API client and its sender."""
