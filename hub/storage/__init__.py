"""Storage start-up: the database (URL, embedded PostgreSQL), writeback pacing, the one-writer lock; may import config and domain."""
