"""The ``cardhub`` commands and ``cardhub demo``; may import every other room of hub, and device_sim."""

from hub.cli.commands import main

__all__ = ["main"]
