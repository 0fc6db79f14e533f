"""Drivers: the agent's hands. Each does one kind of local work, idempotently."""
