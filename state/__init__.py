"""Persistent state, embedded by default: an SQLite file that needs nothing installed."""
