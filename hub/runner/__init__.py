"""The projection runner: the projections' child process, its shared subscription and its supervision; may import storage, config, projections, domain."""
