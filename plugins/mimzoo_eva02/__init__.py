"""mimzoo plugin 'eva02' (being written; see issue 3)."""
