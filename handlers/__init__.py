"""One module per conversation flow. Handlers decide; they never touch XML, HTTP or
WeChat clients. Each takes a bot.dialog.dispatch.Context and returns the text to show, or None."""
