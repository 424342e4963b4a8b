"""mimzoo plugin 'fcmae' (being written; see issue 3)."""
