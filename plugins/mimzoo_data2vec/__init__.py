"""mimzoo plugin 'data2vec' (being written; see issue 3)."""
