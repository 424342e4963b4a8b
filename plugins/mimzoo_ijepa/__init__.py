"""mimzoo plugin 'ijepa' (being written; see issue 3)."""
