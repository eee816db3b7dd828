"""Tooling that drives a hub from outside: ``cardhub bench``, the load generator, spawning a hub, the stats-read and upload-decode benchmarks; may import service and below, and device_sim."""
