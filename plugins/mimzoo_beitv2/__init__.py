"""mimzoo plugin 'beitv2' (being written; see issue 3)."""
