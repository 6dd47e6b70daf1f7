"""CRM webhooks in: each registered CRM's endpoints (POST /webhooks/hubspot,
/webhooks/salesforce/{connection}, /webhooks/dynamics/{connection}, ...), declared by its spec
and dispatched to it."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from connector.crm import CRMSpec
from connector.inbound import Delivery, Endpoint
from connector.registry import CRMS
from webhooks import intake
from webhooks.deps import RuntimeDep
from webhooks.errors import BodyNotReceived, PayloadTooLarge, ServiceError
from webhooks.routes.responses import error_responses

router = APIRouter(tags=["webhooks"])


class Accepted(BaseModel):
    received: int
    stored: int
    duplicates: int


async def read_body(request: Request, *, limit: int) -> bytes:
    """Read at most `limit` bytes; a larger body is refused without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
    except ClientDisconnect:
        # Gone, or cut off by the server's body deadline: nobody reads the answer, and a
        # traceback per slow client would flood the log.
        raise BodyNotReceived("the connection closed before the body was complete") from None
    return bytes(body)


def signed_uri(request: Request, public_url: str | None) -> str:
    """The URL HubSpot signed: as the outside world sees it, so proxies do not break it."""
    if public_url is None:
        return str(request.url)
    query = request.url.query
    return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


def _documented(spec: CRMSpec) -> dict[int | str, dict[str, object]]:
    """The refusals the CRM's endpoints answer with, as OpenAPI responses."""
    answer = spec.inbound.answer
    if answer is None:
        return error_responses(spec.inbound.refusals)
    return {
        200: {
            "description": answer.ok_description,
            "content": {answer.media_type.split(";")[0]: {}},
        },
        **{
            status: {"description": f"{text} {answer.refused_note}"}
            for status, text in spec.inbound.refusals.items()
        },
    }


def _receiver(spec: CRMSpec, endpoint: Endpoint) -> Callable[..., Awaitable[Any]]:
    """The route function of one endpoint: its path parameters (and secret header) declared,
    so OpenAPI shows them, then the delivery handed to the CRM's spec."""

    async def receive(request: Request, runtime: RuntimeDep, **params: str | None) -> Any:
        path = {name: value for name, value in params.items() if value is not None}
        answer = spec.inbound.answer
        try:
            body = await read_body(request, limit=runtime.settings.webhook_max_body_bytes)
            result = await intake.accept_crm(
                spec=spec,
                writer=runtime.writer,
                sessions=runtime.sessions,
                connections=runtime.connections,
                delivery=Delivery(
                    method=request.method,
                    uri=signed_uri(request, runtime.settings.public_url),
                    body=body,
                    headers=request.headers,
                    query=request.query_params,
                    path=path,
                    # The peer as uvicorn reports it: X-Forwarded-For only from its trusted
                    # proxies (FORWARDED_ALLOW_IPS, default 127.0.0.1), so a client cannot pick
                    # its address.
                    client=None if request.client is None else request.client.host,
                    now=datetime.now(UTC),
                    tolerance_seconds=runtime.settings.webhook_timestamp_tolerance_seconds,
                ),
                metrics=runtime.metrics,
            )
        except ServiceError as exc:
            if answer is None:
                raise
            return Response(
                answer.refused(exc.message, exc.status_code),
                status_code=exc.status_code,
                media_type=answer.media_type,
                headers=exc.headers,
            )
        if answer is not None:
            return Response(answer.ok(), media_type=answer.media_type)
        return Accepted(
            received=result.received, stored=result.stored, duplicates=result.duplicates
        )

    parameters = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter(
            "runtime", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=RuntimeDep
        ),
    ]
    for name in re.findall(r"{(\w+)}", endpoint.path):
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str))
    if endpoint.secret_header is not None:
        parameters.append(
            inspect.Parameter(
                "secret",
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[str | None, Header(alias=endpoint.secret_header)],
                default=None,
            )
        )
    receive.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    receive.__name__ = endpoint.name
    return receive


for _spec in CRMS.values():
    for _endpoint in _spec.inbound.endpoints:
        if _spec.inbound.answer is None:
            router.add_api_route(
                _endpoint.path,
                _receiver(_spec, _endpoint),
                methods=["POST"],
                name=_endpoint.name,
                status_code=202,
                response_model=Accepted,
                responses=_documented(_spec),
                summary=_endpoint.summary,
            )
        else:
            router.add_api_route(
                _endpoint.path,
                _receiver(_spec, _endpoint),
                methods=["POST"],
                name=_endpoint.name,
                response_class=Response,
                response_model=None,
                responses=_documented(_spec),
                summary=_endpoint.summary,
            )
