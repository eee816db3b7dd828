"""The hub: the aiohttp service, its ingest writer, storage start-up, and the CLI."""
