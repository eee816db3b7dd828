"""The HTTP handlers, one module per group of routes: they read the request, call ingest or the views, and answer; may import the rest of hub.service and what it may import."""
