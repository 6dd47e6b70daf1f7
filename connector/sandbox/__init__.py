"""A local HubSpot-compatible CRM for the demo, benchmarks and end-to-end tests.

`create_sandbox_app(state)` answers HubSpot's CRM v3 company, property and property-group paths
from an in-memory `SandboxState`; faults (latency, forced statuses) are injected through
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
