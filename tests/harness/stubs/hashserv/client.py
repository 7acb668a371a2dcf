"""Stand-in for hashserv.client (unused with basichash)."""
