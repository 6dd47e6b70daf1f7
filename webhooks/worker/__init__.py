"""The worker: claims inbox events and turns them into health, write-backs and alerts.

loop (the passes, poison isolation) -> decode (per source) -> staging (facts, one rescore per
account) -> scoring (health, alerts, write-back rows); recompute, writeback and alerts are the
pass's other steps; options holds what they share."""
