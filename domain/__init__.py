"""The campus card domain: aggregates, rules, the wire format and the Application.

Imports only the standard library, ``eventsourcing`` and ``cryptography``: no HTTP,
no SQL, no environment reads.
"""
