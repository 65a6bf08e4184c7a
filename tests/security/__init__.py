"""Attacks on a real store: hostile filesystems, the audit attack corpus, what verify trusts, hardening."""
