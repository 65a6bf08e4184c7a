"""Importing legacy session stores: parsing (pure) and inspection."""
