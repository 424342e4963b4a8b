"""mimzoo plugin 'hiera' (being written; see issue 3)."""
