"""The worker: turns claimed inbox events into facts, health, CRM write-backs and alerts.
`loop` runs the passes; decode, staging, scoring, recompute, writeback, alerts and outages are
its steps."""
