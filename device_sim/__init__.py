"""Simulated devices and campus traffic. Talks to the hub over HTTP only; of our own code it
uses ``domain.wire`` alone, the protocol every real device implements too."""
