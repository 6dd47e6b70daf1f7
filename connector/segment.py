"""Segment's tracking spec as a source of product usage and collaboration.

Intake (`check_request`) checks a request the way Segment's HTTP Tracking API does (sizes,
call types, identities) and the request is stored whole: the request path stays as cheap as
parsing it. The worker splits it (`split_request`): batch context merged in, clock skew
corrected, a dedup key from `messageId` per call, and only what health reads kept of each
call (`_INTERPRETED`). It then reads each stored call
(`interpret`) as a product-account mapping (`group`, `identify` with a company) or as activity
(`track`/`page`/`screen`), under the connection's current options.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal, cast

from connector import bounds, jsonparse
from connector.errors import PayloadError, PayloadTooLargeError
from connector.model import (
    SURVEY_SCALES,
    Collaboration,
    CollaborationKind,
    NormalisedEvent,
    SurveyKind,
    SurveyResponse,
    Usage,
)

# Segment's documented limits: 500 KB per batch request, 32 KB per call (alone or in a batch).
BATCH_MAX_BYTES = 500 * 1024
MESSAGE_MAX_BYTES = 32 * 1024

CALL_TYPES = ("track", "page", "screen", "identify", "group", "alias")
USAGE_TYPES = frozenset({"track", "page", "screen"})
AccountMatch = Literal["trait", "domain", "group_id"]

DEFAULT_COLLABORATION_EVENTS: dict[str, CollaborationKind] = {
    "Feedback Submitted": "feedback",
    "Feature Requested": "feature_request",
    "Beta Joined": "beta",
    "Referral Sent": "referral",
    "Case Study Agreed": "case_study",
    "Joint Plan Created": "joint_plan",
}

# Ids longer than this are refused; longer messageIds are hashed into the key.
_MAX_ID = bounds.RECORD_ID


@dataclass(frozen=True, kw_only=True)
class InboxMessage:
    """One accepted call, ready for the inbox."""

    dedup_key: str
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class CheckedRequest:
    calls: int
    # A write key sent in the body (Segment's writeKey authentication), if any.
    write_key: str | None
    # The request as JSON without any writeKey in it, when one was there: what gets stored, so
    # the secret never reaches the inbox (or the backups of it). None: store the body as sent.
    redacted: str | None = None


def check_request(body: bytes, *, call: str) -> CheckedRequest:
    """Intake's half, cheap enough for the request path: the size limits, JSON, and the shape
    of every call (type, identities, `event`, `groupId`). Raise PayloadError (400) or
    PayloadTooLargeError (413) naming the field; nothing is accepted unless every call passes.
    Times and the 32 KB limit per call inside a batch are checked by `split_request`."""
    if call not in (*CALL_TYPES, "batch"):
        raise PayloadError(f"unknown call {call!r}: expected batch or one of {CALL_TYPES}")
    limit = BATCH_MAX_BYTES if call == "batch" else MESSAGE_MAX_BYTES
    if len(body) > limit:
        raise PayloadTooLargeError(
            f"body of {len(body)} bytes exceeds Segment's {limit // 1024} KB limit for {call}"
        )
    document = _document(body)
    # The worker stores the calls' ids, names and payloads: every string must be storable.
    problem = bounds.unstorable_text(body, document)
    if problem is not None:
        raise PayloadError(problem)
    write_key = document.get("writeKey")
    if write_key is not None and not isinstance(write_key, str):
        raise PayloadError("writeKey: must be a string")
    if call != "batch":
        _check_shape({**document, "type": call}, "")
        return CheckedRequest(
            calls=1, write_key=write_key, redacted=_without_write_keys(document, calls=[])
        )
    items = document.get("batch")
    if not isinstance(items, list):
        raise PayloadError("batch: required, an array of calls")
    for name in ("context", "integrations"):
        _object(document, name, "")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PayloadError(f"batch[{index}]: must be an object")
        _check_shape(item, f"batch[{index}].")
    return CheckedRequest(
        calls=len(items), write_key=write_key, redacted=_without_write_keys(document, calls=items)
    )


def _without_write_keys(document: dict[str, Any], *, calls: list[dict[str, Any]]) -> str | None:
    """The document as JSON without any write key: its own `writeKey` and `context.writeKey`
    and those of each of a batch's `calls`; None when there was none, so the common request is
    stored as sent, without re-encoding it."""
    cleaned, changed = _without_write_key(document)
    if calls:
        scrubbed = [_without_write_key(item) for item in calls]
        if any(item_changed for _, item_changed in scrubbed):
            cleaned["batch"] = [item for item, _ in scrubbed]
            changed = True
    if not changed:
        return None
    # ASCII escapes: a lone surrogate the parser let through stays storable.
    return json.dumps(cleaned, separators=(",", ":"))


def _without_write_key(message: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """One object (a request or a call) without `writeKey` and `context.writeKey`, the two
    places Segment's libraries put it, and whether either was there."""
    changed = "writeKey" in message
    cleaned = {name: value for name, value in message.items() if name != "writeKey"}
    context = message.get("context")
    if isinstance(context, dict) and "writeKey" in context:
        cleaned["context"] = {name: value for name, value in context.items() if name != "writeKey"}
        changed = True
    return cleaned, changed


def split_request(
    body: str | bytes, *, call: str, received_at: datetime, strict: bool = False
) -> list[InboxMessage]:
    """The worker's half: each call of a request `check_request` accepted, with the batch's
    context merged in, its time corrected and its dedup key. A call failing the remaining
    checks (a timestamp, the 32 KB limit per call) is kept with its error under `_invalid`,
    so it is dead-lettered with the reason, not lost; `strict` raises instead."""
    document = _document(body)
    if call != "batch":
        message = {**document, "type": call}
        message.pop("writeKey", None)
        return [_prepared(message, "", received_at=received_at, strict=strict)]
    shared_context = _object(document, "context", "")
    shared_integrations = _object(document, "integrations", "")
    shared_sent_at = document.get("sentAt")
    messages: list[InboxMessage] = []
    for index, item in enumerate(document.get("batch") or []):
        where = f"batch[{index}]."
        message = dict(item)
        # Batch-level context and integrations are merged in; the call's own values win.
        if shared_context:
            message["context"] = {**shared_context, **_object(item, "context", where)}
        if shared_integrations:
            message["integrations"] = {
                **shared_integrations,
                **_object(item, "integrations", where),
            }
        if shared_sent_at is not None and "sentAt" not in message:
            message["sentAt"] = shared_sent_at
        size = len(_compact(item))
        if size > MESSAGE_MAX_BYTES:
            error = f"{where[:-1]}: call of {size} bytes exceeds Segment's 32 KB limit per call"
            if strict:
                raise PayloadTooLargeError(error)
            messages.append(_invalid(message, error))
            continue
        messages.append(_prepared(message, where, received_at=received_at, strict=strict))
    return messages


def parse_request(body: bytes, *, call: str, received_at: datetime) -> list[InboxMessage]:
    """Both halves at once, all or nothing (what a request would give after the worker)."""
    check_request(body, call=call)
    return split_request(body, call=call, received_at=received_at, strict=True)


def _document(body: str | bytes) -> dict[str, Any]:
    try:
        document: Any = jsonparse.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PayloadError("body must be a JSON object")
    return document


def _check_shape(message: dict[str, Any], where: str) -> str:
    call = message.get("type")
    if call not in CALL_TYPES:
        raise PayloadError(f"{where}type: required, one of {', '.join(CALL_TYPES)}")
    for name in ("context", "integrations", "properties", "traits"):
        _object(message, name, where)
    user_id = _identifier(message, "userId", where)
    anonymous_id = _identifier(message, "anonymousId", where)
    if call == "alias":
        if _identifier(message, "previousId", where) is None:
            raise PayloadError(f"{where}previousId: required for alias calls")
        if user_id is None:
            raise PayloadError(f"{where}userId: required for alias calls")
    elif user_id is None and anonymous_id is None:
        raise PayloadError(f"{where}userId: a userId or an anonymousId is required")
    if call == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise PayloadError(f"{where}event: required for track calls, a non-empty string")
    if call == "group" and _identifier(message, "groupId", where) is None:
        raise PayloadError(f"{where}groupId: required for group calls")
    _check_group_fields(message, call, where)
    message_id = message.get("messageId")
    if message_id is not None and (not isinstance(message_id, str) or not message_id):
        raise PayloadError(f"{where}messageId: must be a non-empty string")
    return str(call)


def _check_group_fields(message: Mapping[str, Any], call: str, where: str) -> None:
    """What the worker stores of a product account: its id (a track's context.groupId, an
    identify's company.id) and its name, each within its column."""
    traits = message.get("traits") or {}
    checks: list[tuple[str, Any, int]] = []
    if call == "group":
        checks.append(("traits.name", trait(traits, "name"), bounds.NAME))
    elif call == "identify":
        company = trait(traits, "company")
        if isinstance(company, dict):
            checks.append(("traits.company.id", company.get("id"), _MAX_ID))
            checks.append(("traits.company.name", company.get("name"), bounds.NAME))
    elif call in USAGE_TYPES:
        context = message.get("context") or {}
        checks.append(("context.groupId", context.get("groupId"), _MAX_ID))
        checks.append(("groupId", message.get("groupId"), _MAX_ID))
    for name, value, limit in checks:
        text = _text(value)
        if text is not None and len(text) > limit:
            raise PayloadError(f"{where}{name}: at most {limit} characters (got {len(text)})")


def _dedup_key(message: dict[str, Any]) -> str:
    message_id = message.get("messageId")
    if isinstance(message_id, str) and message_id and len(message_id) <= _MAX_ID:
        return message_id
    return "sha256:" + hashlib.sha256(_canonical(message)).hexdigest()


def _invalid(message: dict[str, Any], error: str) -> InboxMessage:
    kind = message.get("type")
    return InboxMessage(
        dedup_key=_dedup_key(message),
        kind=kind if kind in CALL_TYPES else "invalid",
        payload={**message, "_invalid": error},
    )


# What `interpret` reads of a call: the stored call keeps these (and a survey answer's
# properties) and nothing else. A call as Segment's libraries send it also carries the
# device's context (IP address, user agent, page, library), its other `properties`,
# `integrations` and the times its timestamp was corrected with, often
# most of its size; none of them count for health, and the inbox keeps calls for the dedup
# window. A call that fails a check is kept whole, so its dead letter shows what came.
_INTERPRETED = ("type", "messageId", "timestamp", "userId", "anonymousId", "event", "name",
                "groupId", "traits")  # fmt: skip


def _normalised(message: Mapping[str, Any]) -> dict[str, Any]:
    kept = {name: message[name] for name in _INTERPRETED if name in message}
    context = message.get("context")
    if isinstance(context, dict) and "groupId" in context:
        kept["context"] = {"groupId": context["groupId"]}
    properties = message.get("properties")
    if isinstance(properties, dict):
        answer = {name: properties[name] for name in _SURVEY_PROPERTIES if name in properties}
        if answer:
            kept["properties"] = answer
    return kept


def _prepared(
    message: dict[str, Any], where: str, *, received_at: datetime, strict: bool
) -> InboxMessage:
    try:
        call = _check_shape(message, where)
        dedup_key = _dedup_key(message)
        _stamp(message, where, received_at=received_at)
    except PayloadError as exc:
        if strict:
            raise
        return _invalid(message, str(exc))
    return InboxMessage(dedup_key=dedup_key, kind=call, payload=_normalised(message))


def _stamp(message: dict[str, Any], where: str, *, received_at: datetime) -> None:
    """Set `timestamp` to when the call happened, as Segment does.

    A call forwarded from Segment already carries `receivedAt` and a corrected `timestamp`.
    Otherwise the device's clock skew is removed: receivedAt - (sentAt - originalTimestamp).
    A time after we received the call is impossible and is capped."""
    given = {
        name: parse_timestamp(message[name], f"{where}{name}")
        for name in ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
        if message.get(name) is not None
    }
    received = given.get("receivedAt")
    if received is not None:
        happened = given.get("timestamp") or received
    else:
        received = received_at
        original = given.get("originalTimestamp") or given.get("timestamp")
        sent = given.get("sentAt")
        if original is None:
            happened = received
        elif sent is None:
            happened = original
        else:
            happened = received - (sent - original)
    message["timestamp"] = min(happened, received).isoformat()


_LENIENT_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: object, where: str) -> datetime:
    """An ISO 8601 time, read as leniently as Segment does (its own batch example has
    "2015-2-02T00:30:08.276Z"); a time without offset is UTC, as Segment treats it."""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: must be an ISO 8601 string")
    try:
        # The common, well-formed case, without the regular expression's cost.
        moment = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    match = _LENIENT_TIMESTAMP.match(value.strip())
    if match is None:
        raise PayloadError(f"{where}: {value!r} is not an ISO 8601 date-time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise PayloadError(f"{where}: {value!r} is not a valid date-time ({exc})") from None
    if offset and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment


def _object(message: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = message.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where}{name}: must be an object")
    return value


def _identifier(message: Mapping[str, Any], name: str, where: str) -> str | None:
    """Segment ids are strings; numbers are accepted (some libraries send them) as text."""
    value = message.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(f"{where}{name}: must be a string")
    text = str(value)
    if len(text) > _MAX_ID:
        raise PayloadError(f"{where}{name}: at most {_MAX_ID} characters (got {len(text)})")
    return text


def _compact(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _canonical(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True, separators=(",", ":"), default=str).encode()


# --- reading stored messages (the worker) -------------------------------------------------------


# Track events that carry a survey answer (as survey tools name them when they send to
# Segment); compared as normalised_event_name does. Their properties: `score` (required),
# `kind` or `survey_type` (nps, csat, ces; nps when absent) and `comment`.
SURVEY_EVENTS = frozenset({"survey responded", "survey submitted", "nps survey responded"})
# What a stored call keeps of its properties: a survey answer's, nothing else.
_SURVEY_PROPERTIES = ("score", "kind", "survey_type", "comment")


@dataclass(frozen=True, kw_only=True)
class SurveyAnswer:
    kind: SurveyKind
    score: float
    comment: str | None


def _survey_answer(message: Mapping[str, Any]) -> SurveyAnswer:
    """The answer a survey track call carries; PayloadError (dead-lettered with the reason)
    when it has no usable score."""
    properties = message.get("properties") or {}
    kind = str(properties.get("kind") or properties.get("survey_type") or "nps").casefold()
    if kind not in SURVEY_SCALES:
        raise PayloadError(f"properties.kind: one of nps, csat, ces (got {kind[:40]!r})")
    raw = properties.get("score")
    try:
        score = float(raw) if isinstance(raw, int | float | str) and raw is not True else math.nan
    except ValueError:  # a text that is no number
        score = math.nan
    low, high = SURVEY_SCALES[kind]
    if not low <= score <= high:
        raise PayloadError(
            f"properties.score: a {kind} score from {low} to {high} is required (got {raw!r:.40})"
        )
    comment = _text(properties.get("comment"))
    return SurveyAnswer(
        kind=cast(SurveyKind, kind),
        score=score,
        comment=comment[: bounds.COMMENT] if comment else None,
    )


def normalised_event_name(name: str) -> str:
    """Event names compare without case or extra spaces: "feedback  submitted" is the same."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True, kw_only=True)
class SegmentOptions:
    """How one connection reads its Segment calls.

    `account_match` says how a product account (groupId) finds its CRM account:
    - "trait": a group trait (`account_trait`, e.g. crm_id) holds the CRM record id;
    - "domain": a group trait (e.g. website) holds the company's domain or URL, matched with
      the CRM account's domain;
    - "group_id": the groupId is the CRM record id itself.
    """

    account_match: AccountMatch = "trait"
    account_trait: str = "crm_id"
    collaboration_events: Mapping[str, CollaborationKind] = field(
        default_factory=lambda: dict(DEFAULT_COLLABORATION_EVENTS)
    )

    @cached_property
    def _kind_by_name(self) -> dict[str, CollaborationKind]:
        # The names normalised once per options, not for every track call; of names equal
        # once normalised, the first listed counts.
        kinds: dict[str, CollaborationKind] = {}
        for name, kind in self.collaboration_events.items():
            kinds.setdefault(normalised_event_name(name), kind)
        return kinds

    def collaboration_kind(self, event: str) -> CollaborationKind | None:
        return self._kind_by_name.get(normalised_event_name(event))


@dataclass(frozen=True, kw_only=True)
class GroupCall:
    """A user acting in a product account, and what the call says about that account. `match`
    None means the call did not carry the mapping trait (an earlier value stays)."""

    group_id: str
    user_id: str | None
    name: str | None
    match: str | None
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Activity:
    """Product activity by a user, in a product account when the call names one."""

    group_id: str | None
    user_id: str | None
    at: datetime
    feature: str | None
    usage: bool
    collaboration: CollaborationKind | None
    # A survey answer, and who gave it (the userId, else the anonymousId).
    answer: SurveyAnswer | None = None
    respondent: str | None = None

    def events(self, account: str) -> list[NormalisedEvent]:
        found: list[NormalisedEvent] = []
        if self.usage and self.user_id is not None:
            found.append(
                Usage(account=account, at=self.at, user=self.user_id, feature=self.feature)
            )
        if self.collaboration is not None:
            found.append(Collaboration(account=account, at=self.at, kind=self.collaboration))
        if self.answer is not None and self.respondent is not None:
            found.append(
                SurveyResponse(
                    account=account,
                    at=self.at,
                    kind=self.answer.kind,
                    score=self.answer.score,
                    respondent=self.respondent,
                    comment=self.answer.comment,
                )
            )
        return found


ProductMessage = GroupCall | Activity


def interpret(message: Mapping[str, Any], options: SegmentOptions) -> ProductMessage | None:
    """What a stored call means for health; None when nothing (an alias, an identify without a
    company, an anonymous page view that is not a collaboration event)."""
    invalid = message.get("_invalid")
    if invalid is not None:
        raise PayloadError(str(invalid))
    call = message.get("type")
    at = parse_timestamp(message.get("timestamp"), "timestamp")
    user_id = _identifier(message, "userId", "")
    traits = message.get("traits") or {}
    if call == "group":
        group_id = _identifier(message, "groupId", "")
        if group_id is None:
            raise PayloadError("groupId: required for group calls")
        return GroupCall(
            group_id=group_id,
            user_id=user_id,
            name=_text(trait(traits, "name")),
            match=_match_value(group_id, traits, options),
            at=at,
        )
    if call == "identify":
        # Segment's reserved `company` trait ({id, name, ...}) ties the user to a group.
        company = trait(traits, "company")
        company_id = _text(company.get("id")) if isinstance(company, dict) else None
        if company_id is None or user_id is None:
            return None
        return GroupCall(
            group_id=company_id,
            user_id=user_id,
            name=_text(company.get("name")) if isinstance(company, dict) else None,
            match=_match_value(company_id, company, options) if isinstance(company, dict) else None,
            at=at,
        )
    if call not in USAGE_TYPES:
        return None
    context = message.get("context") or {}
    group_id = _text(context.get("groupId")) or _text(message.get("groupId"))
    feature = _text(message.get("event") if call == "track" else message.get("name"))
    collaboration = (
        options.collaboration_kind(str(message.get("event"))) if call == "track" else None
    )
    answer = (
        _survey_answer(message)
        if call == "track" and normalised_event_name(str(message.get("event"))) in SURVEY_EVENTS
        else None
    )
    # Seats are people: only identified users count as active use; anonymous visitors do not.
    # A survey answer is not use of the product: survey tools send it from their servers.
    usage = user_id is not None and answer is None
    if not usage and collaboration is None and answer is None:
        return None
    return Activity(
        group_id=group_id,
        user_id=user_id,
        at=at,
        feature=feature[:200] if feature else None,
        usage=usage,
        collaboration=collaboration,
        answer=answer,
        respondent=user_id or _identifier(message, "anonymousId", ""),
    )


def trait(traits: Mapping[str, Any], name: str) -> Any:
    """A trait by name; Segment traits are case-insensitive (createdAt = created_at)."""
    if name in traits:
        return traits[name]
    wanted = _trait_key(name)
    for key, value in traits.items():
        if _trait_key(key) == wanted:
            return value
    return None


def _trait_key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).casefold()


def _match_value(group_id: str, traits: Mapping[str, Any], options: SegmentOptions) -> str | None:
    if options.account_match == "group_id":
        return group_id if len(group_id) <= bounds.ACCOUNT_ID else None
    value = _text(trait(traits, options.account_trait))
    if value is None:
        return None
    if options.account_match == "domain":
        domain = normalised_domain(value)
        # Longer is no domain (DNS stops at 253) and matches no account.
        return domain if domain is not None and len(domain) <= bounds.SHORT_TEXT else None
    # Longer is no CRM record id: it matches no account, and the column holds no more.
    return value if len(value) <= bounds.ACCOUNT_ID else None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def normalised_domain(value: str) -> str | None:
    """ "https://www.Initech.com/about" and "initech.com" are the same company domain."""
    host = value.strip().casefold()
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host)
    host = re.split(r"[/?#:]", host, maxsplit=1)[0]
    host = host.removeprefix("www.").strip(".")
    return host or None
