"""Chaos Shop's shared core: settings, database access, the order transaction, resilience."""
