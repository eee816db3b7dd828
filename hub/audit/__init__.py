"""The audit trail: signed Merkle checkpoints and ``cardhub audit verify``; may import storage, config, projections, domain."""
