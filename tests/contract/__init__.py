"""Public-API behaviour through a real on-disk store."""
