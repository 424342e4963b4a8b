"""mimzoo plugin 'beit' (being written; see issue 3)."""
