"""A local HubSpot-compatible CRM for the demo, benchmarks and end-to-end tests.

`create_sandbox_app(state)` answers HubSpot's CRM v3 object paths (companies read and written;
contacts, emails, calls, meetings, notes and tickets read, with `associations=`) and the company
property and property-group paths from an in-memory `SandboxState` (seed it with `add_company`
and `add_object`); faults (latency, forced statuses) are injected through
`state.faults` or the unprotected `/_sandbox/` control routes, and every /crm call is recorded.
"""

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.state import (
    ApiError,
    FaultPlan,
    ForcedAnswer,
    RecordedRequest,
    SandboxState,
)

__all__ = [
    "ApiError",
    "FaultPlan",
    "ForcedAnswer",
    "RecordedRequest",
    "SandboxState",
    "create_sandbox_app",
]
