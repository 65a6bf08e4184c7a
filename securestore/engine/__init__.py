"""The session directory format (pure): journal records, replay, manifest revisions, snapshots."""
