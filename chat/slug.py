"""The shape of a room slug (PROTOCOL.md), shared by the models and the live URLs."""

SLUG_PATTERN = r"[a-z0-9][a-z0-9-]{0,49}"
