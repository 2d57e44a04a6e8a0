"""Delivery: the outbox (claims, leases, state changes) and the dispatcher loop."""
