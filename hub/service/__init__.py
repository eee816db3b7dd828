"""The HTTP service: app factory, middleware, schemas, OpenAPI, metrics, keys, health, routes/, static/; may import ingest, runner, audit, storage, config, projections, domain."""
