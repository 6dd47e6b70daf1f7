"""Alerts: rules evaluated when accounts are rescored, a durable delivery outbox, channels."""
