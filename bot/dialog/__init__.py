"""The dialog: one inbound event in, a Reply out: de-duplication, the person's conversation, dispatch to a flow."""
