"""Dependency aliases for routes: the one place that reaches into app state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from webhooks.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
