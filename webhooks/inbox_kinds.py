"""Inbox sources and kinds that the writers of the inbox (intake, backfill) and the worker
that reads it both name: one home, so the worker never imports the request path."""

from __future__ import annotations

# The inbox source of native documents a backfill read from a CRM: decoded as native events,
# their attributes count as the CRM's.
BACKFILL_SOURCE = "backfill"

# The kind prefix of a whole Segment request stored as one row ("request:batch", ...): the
# worker splits it into its calls, each stored as an inbox row of its own.
SEGMENT_REQUEST = "request:"

# The inbox source of documents made by the service's own admin API (a CSM's sentiment): folded
# and scored by the worker like any fact, so the request only stores them.
ADMIN_SOURCE = "admin"
SENTIMENT_KIND = "sentiment"
