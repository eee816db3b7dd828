"""The ingest path of device uploads: the pipeline (admit, parse, verify, enqueue), the writer thread and its event recorder; may import storage, config, domain."""
