"""Durable delivery: the outbox, its sender, gates and back-off, and the sinks."""
