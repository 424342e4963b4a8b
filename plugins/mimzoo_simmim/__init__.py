"""mimzoo plugin 'simmim' (being written; see issue 3)."""
