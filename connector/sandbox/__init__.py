"""A local HubSpot-compatible CRM for the demo, benchmarks and end-to-end tests.

`create_sandbox_app(state)` answers HubSpot's CRM v3 object paths for companies, contacts, deals,
tickets, emails, calls, meetings, notes and tasks (list, read, create with `associations`,
PATCH, batch read and update), v4 association batch reads, the company property and group paths,
and HubSpot's v1 OAuth endpoints, from a `SandboxState` (in memory, or on SQLite with
`database=`; seed it with `add_company` and `add_object`). Every /crm answer carries HubSpot's
rate-limit headers; faults, limits, latency, OAuth and signed outgoing webhooks are driven through
`state.faults`, `state.limits`, `state.oauth`, `state.webhooks` or the unprotected `/_sandbox/`
control routes, and every /crm call is recorded.
"""

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.errors import ApiError
from connector.sandbox.faults import FaultPlan, ForcedAnswer, RecordedRequest
from connector.sandbox.state import SandboxState

__all__ = [
    "ApiError",
    "FaultPlan",
    "ForcedAnswer",
    "RecordedRequest",
    "SandboxState",
    "create_sandbox_app",
]
