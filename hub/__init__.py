"""The hub, in rooms (each ``__init__`` says what it may import): cli > bench > service > ingest | runner | audit > storage > config."""
