"""Floor 4, the recipes users call: the store facade, sessions, reads, key sources."""
