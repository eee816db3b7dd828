"""Simulated devices, phones and campus traffic. Talks to the hub over HTTP only; of our own code
it uses ``domain.wire`` and ``domain.paycode`` alone, the protocol every real device and phone
implements too."""
