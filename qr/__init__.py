"""Case codes: unguessable tokens, short printed codes, images, issue and revoke."""
