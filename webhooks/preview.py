"""What a candidate configuration would do, before anyone applies it: a preview on today's facts
(bands before/after, the accounts that change band, the alerts that would fire, in total and
per rule). It only reads: nothing is stored, written back or alerted. (Backtests against known
outcomes, and suggestions, are webhooks.calibration's.)

A preview scores every account of a connection, which takes seconds of CPU on the event loop
that also acknowledges webhooks. So it reads through the read-only sessions (never the
connection intake writes through), reads in small chunks, hands the loop back after every
slice of work, and only `CRM_HEALTH_PREVIEW_CONCURRENCY` previews compute at once (`Turns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from time import perf_counter
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from signals.config import AlertRule, HealthConfig, error_parts
from signals.model import Band, Health
from signals.scoring import score
from webhooks import config_service
from webhooks.alerts.manage import AccountRef
from webhooks.alerts.rules import AccountState, conditions
from webhooks.alerts.service import account_state
from webhooks.errors import Busy, InvalidFields
from webhooks.store import accounts, configs, facts, outcomes
from webhooks.store.db import AsyncSession, SessionFactory
from webhooks.store.models import AccountRow

log = structlog.get_logger(__name__)

# Accounts read at a time. Turning a chunk's rows into objects is one stretch of CPU on the
# event loop (about 0.07 ms per account with its facts), so a chunk must stay small.
CHUNK = 200
# Longest stretch of scoring before the event loop is handed back: a webhook arriving meanwhile
# waits at most about this long per computation running.
SLICE_SECONDS = 0.002
# How long a preview waits for a turn before it is refused.
TURN_WAIT_SECONDS = 30.0
MAX_PROBLEMS = 50
BANDS = tuple(
    band.value for band in (Band.HEALTHY, Band.NEUTRAL, Band.AT_RISK, Band.UNKNOWN, Band.ONBOARDING)
)


# -- what the API returns ------------------------------------------------------------------------


class BandCounts(BaseModel):
    healthy: int = 0
    neutral: int = 0
    at_risk: int = 0
    unknown: int = 0
    onboarding: int = 0


class BandsBeforeAfter(BaseModel):
    before: BandCounts
    after: BandCounts


class ChangedAccount(BaseModel):
    id: str  # the CRM record id
    name: str | None
    old_score: int | None
    old_band: str
    new_score: int | None
    new_band: str
    # new - old; None when either has no score (counted as the largest change).
    change: int | None


class ChangedPage(BaseModel):
    items: list[ChangedAccount]
    total: int
    limit: int


class WouldFire(BaseModel):
    rule: str
    key: str
    account: AccountRef
    title: str
    reason: str
    score: int | None
    band: str


class RuleTotal(BaseModel):
    """What one rule of the candidate would newly raise: how many alerts, on how many
    accounts, and the first of those accounts (in account order, at most `rule_accounts`)."""

    rule: str
    when: str
    enabled: bool
    total: int
    accounts_total: int
    accounts: list[AccountRef]


class AlertsPage(BaseModel):
    items: list[WouldFire]
    total: int
    limit: int
    # One entry per rule of the candidate, in its order, including rules that raise nothing,
    # so a rule that would stay silent is visible as such.
    rules: list[RuleTotal]


class Preview(BaseModel):
    current_version: str
    candidate_version: str
    # Config fields whose values differ, e.g. "bands.healthy_min", "alerts.1.points".
    diff_paths: list[str]
    accounts: int
    bands: BandsBeforeAfter
    changed: ChangedPage
    alerts: AlertsPage
    computed_at: datetime


# -- sharing the service ---------------------------------------------------------------------------


class Turns:
    """At most `size` previews compute at once: each is seconds of CPU, and
    many together would starve webhook intake of the event loop. The others wait for a turn
    (first come, first served) up to `wait_seconds`, then are refused with 503 and
    Retry-After."""

    def __init__(self, size: int, *, wait_seconds: float = TURN_WAIT_SECONDS) -> None:
        self.size = size
        self.wait_seconds = wait_seconds
        self._free = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.wait_seconds):
                await self._free.acquire()
        except TimeoutError:
            raise Busy(
                f"busy: config previews run {self.size} at a time "
                f"(CRM_HEALTH_PREVIEW_CONCURRENCY) and no turn came free within "
                f"{self.wait_seconds:.0f} s; try again shortly",
                headers={"Retry-After": "10"},
            ) from None
        try:
            yield
        finally:
            self._free.release()


class Pacer:
    """Hands the event loop back once `slice_seconds` of work have passed since it last did."""

    def __init__(self, slice_seconds: float = SLICE_SECONDS) -> None:
        self._slice = slice_seconds
        self._since = perf_counter()

    async def tick(self) -> None:
        if perf_counter() - self._since >= self._slice:
            await asyncio.sleep(0)
            self._since = perf_counter()


# -- validation ----------------------------------------------------------------------------------


def candidate_config(document: Mapping[str, Any]) -> HealthConfig:
    """The candidate as a HealthConfig; InvalidFields naming every invalid field path."""
    try:
        return HealthConfig.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"config{'.' if path else ''}{path}: {message}"
            for path, message in map(error_parts, exc.errors())
        ]
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        raise InvalidFields("; ".join(shown) + (f"; and {more} more" if more else "")) from None


def changed_paths(before: HealthConfig, after: HealthConfig) -> list[str]:
    """Dotted paths of the leaves that differ (list items by position), sorted."""
    changes = config_service.diff_paths(
        before.model_dump(mode="json"), after.model_dump(mode="json")
    )
    return sorted(path for path, _, _ in changes)


# -- preview -------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class _Tally:
    """What a preview keeps while streaming: counters and the top changes, never all accounts."""

    limit: int
    rule_accounts: int
    accounts: int = 0
    changed: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        self.before: Counter[str] = Counter()
        self.after: Counter[str] = Counter()
        # Min-heap of (size of the change, -account id, item): the smallest is dropped first.
        self.top: list[tuple[int, int, ChangedAccount]] = []
        self.alerts: list[WouldFire] = []
        # Per rule name: alerts counted, and the accounts they fall on (ids counted, the first
        # `rule_accounts` kept with their names).
        self.rule_alerts: Counter[str] = Counter()
        self.rule_account_ids: dict[str, set[int]] = {}
        self.rule_shown: dict[str, list[AccountRef]] = {}

    def add_alert(self, account: AccountRow, fired: WouldFire) -> None:
        self.fired += 1
        if len(self.alerts) < self.limit:
            self.alerts.append(fired)
        self.rule_alerts[fired.rule] += 1
        seen = self.rule_account_ids.setdefault(fired.rule, set())
        if account.id in seen:
            return
        seen.add(account.id)
        shown = self.rule_shown.setdefault(fired.rule, [])
        if len(shown) < self.rule_accounts:
            shown.append(fired.account)

    def rule_totals(self, rules: Sequence[AlertRule]) -> list[RuleTotal]:
        return [
            RuleTotal(
                rule=rule.name,
                when=rule.when,
                enabled=rule.enabled,
                total=self.rule_alerts[rule.name],
                accounts_total=len(self.rule_account_ids.get(rule.name, ())),
                accounts=self.rule_shown.get(rule.name, []),
            )
            for rule in rules
        ]

    def add_change(self, account: AccountRow, old: Health, new: Health) -> None:
        self.changed += 1
        change = None if old.score is None or new.score is None else new.score - old.score
        entry = (
            101 if change is None else abs(change),
            -account.id,
            ChangedAccount(
                id=account.crm_id,
                name=account.name,
                old_score=old.score,
                old_band=old.band.value,
                new_score=new.score,
                new_band=new.band.value,
                change=change,
            ),
        )
        if len(self.top) < self.limit:
            heapq.heappush(self.top, entry)
        elif entry[:2] > self.top[0][:2]:
            heapq.heapreplace(self.top, entry)


def _state(
    account: AccountRow,
    health: Health,
    before: Mapping[int, Mapping[int, int | None]],
    scoring_version: str,
) -> AccountState:
    return account_state(
        account,
        health,
        scores_before={days: found.get(account.id) for days, found in before.items()},
        scoring_version=scoring_version,
    )


async def preview(
    sessions: SessionFactory,
    *,
    turns: Turns,
    connection: str,
    document: Mapping[str, Any],
    limit: int,
    now: datetime,
    scope: str | None,
    rule_accounts: int = 10,
) -> Preview:
    """Score every live account of the connection under the current and the candidate
    configuration (each as it applies to that connection) on today's facts, in chunks,
    keeping only counters and the top changes. `scope` is the caller's (see config_service):
    the changed paths compare the candidate with what the caller sees. Per rule it counts
    the alerts and accounts, naming the first `rule_accounts` accounts."""
    submitted = candidate_config(document)
    candidate = submitted.for_connection(connection)
    tally = _Tally(limit=limit, rule_accounts=rule_accounts)
    today = now.astimezone(UTC).date()
    pacer = Pacer()
    async with turns.turn(), sessions() as session:
        _, in_force = await configs.current(session)
        current = in_force.for_connection(connection)
        windows = sorted(
            {
                rule.days
                for rule in (*current.alerts, *candidate.alerts)
                if rule.enabled and rule.when == "score_drop"
            }
        )
        raises = any(rule.enabled for rule in candidate.alerts)
        # Same rules on the same indicators: an account whose band stays raises nothing new,
        # and working its conditions out (indicator rules explain every score) can be skipped.
        same_inputs = (
            candidate.alerts == current.alerts
            and candidate.signals == current.signals
            and candidate.segments == current.segments
            and candidate.product == current.product
            and candidate.custom_signals == current.custom_signals
            and candidate.custom_indicators == current.custom_indicators
            and candidate.sentiment == current.sentiment
        )
        after_id = 0
        while True:
            chunk = await outcomes.live_accounts_page(
                session, connection=connection, after_id=after_id, limit=CHUNK
            )
            if not chunk:
                break
            await _preview_chunk(
                session,
                chunk=chunk,
                current=current,
                candidate=candidate,
                windows=windows if raises else [],
                raises=raises,
                same_inputs=same_inputs,
                tally=tally,
                now=now,
                today=today,
                pacer=pacer,
            )
            after_id = chunk[-1].id
            if len(chunk) < CHUNK:
                break
    log.info(
        "config_previewed",
        connection=connection,
        accounts=tally.accounts,
        changed=tally.changed,
        alerts=tally.fired,
        candidate=candidate.version,
    )
    top = sorted(tally.top, key=lambda entry: (-entry[0], -entry[1]))
    return Preview(
        current_version=current.version,
        candidate_version=candidate.version,
        diff_paths=changed_paths(config_service.visible(in_force, scope), submitted),
        accounts=tally.accounts,
        bands=BandsBeforeAfter(
            before=BandCounts(**{band: tally.before[band] for band in BANDS}),
            after=BandCounts(**{band: tally.after[band] for band in BANDS}),
        ),
        changed=ChangedPage(items=[item for _, _, item in top], total=tally.changed, limit=limit),
        alerts=AlertsPage(
            items=tally.alerts,
            total=tally.fired,
            limit=limit,
            rules=tally.rule_totals(candidate.alerts),
        ),
        computed_at=now,
    )


async def _preview_chunk(
    session: AsyncSession,
    *,
    chunk: Sequence[AccountRow],
    current: HealthConfig,
    candidate: HealthConfig,
    windows: Sequence[int],
    raises: bool,
    same_inputs: bool,
    tally: _Tally,
    now: datetime,
    today: date,
    pacer: Pacer,
) -> None:
    snapshots = await facts.read_facts(session, accounts=chunk, as_of=now, reads=current.fact_reads)
    # Other key features or custom indicators are other facts: read them for the candidate.
    candidate_snapshots = snapshots
    if candidate.fact_reads != current.fact_reads:
        candidate_snapshots = await facts.read_facts(
            session, accounts=chunk, as_of=now, reads=candidate.fact_reads
        )
    ids = [account.id for account in chunk]
    # As the worker would score under each: hysteresis from the band each configuration last
    # gave the account, score drops only against scores computed under it.
    under_current = dict.fromkeys(ids, current.scoring_version)
    under_candidate = dict.fromkeys(ids, candidate.scoring_version)
    before = {
        days: await accounts.scores_at_or_before(
            session, account_ids=ids, at=now - timedelta(days=days), versions=under_candidate
        )
        for days in windows
    }
    before_now = before
    if windows and under_current != under_candidate:
        before_now = {
            days: await accounts.scores_at_or_before(
                session, account_ids=ids, at=now - timedelta(days=days), versions=under_current
            )
            for days in windows
        }
    previous_now = await accounts.previous_bands(
        session, accounts=chunk, versions=under_current, at=now
    )
    previous_then = (
        previous_now
        if under_current == under_candidate
        else await accounts.previous_bands(
            session, accounts=chunk, versions=under_candidate, at=now
        )
    )
    open_now = await outcomes.open_alert_keys(session, account_ids=ids) if raises else {}
    for account in chunk:
        await pacer.tick()
        old = score(snapshots[account.id], current, previous_band=previous_now[account.id])
        new = score(
            candidate_snapshots[account.id], candidate, previous_band=previous_then[account.id]
        )
        tally.accounts += 1
        tally.before[old.band.value] += 1
        tally.after[new.band.value] += 1
        if old.band is not new.band:
            tally.add_change(account, old, new)
        if not raises or (same_inputs and old.band is new.band):
            continue
        fire = conditions(
            candidate.alerts,
            _state(account, new, before, candidate.scoring_version),
            today=today,
        )
        fire = [condition for condition in fire if condition.raises]
        if not fire:
            continue
        held = open_now.get(account.id, set())
        fire = [c for c in fire if (c.rule.name, c.key) not in held]
        if fire:
            # Also what the current rules would raise on today's facts anyway (the worker has
            # not rescored yet): not the candidate's doing. Worked out only when needed, since
            # indicator rules need the whole explanation.
            anyway = {
                (c.rule.name, c.key)
                for c in conditions(
                    current.alerts,
                    _state(account, old, before_now, current.scoring_version),
                    today=today,
                )
                if c.raises
            }
            fire = [c for c in fire if (c.rule.name, c.key) not in anyway]
        for condition in fire:
            tally.add_alert(
                account,
                WouldFire(
                    rule=condition.rule.name,
                    key=condition.key,
                    account=AccountRef(id=account.crm_id, name=account.name),
                    title=condition.title,
                    reason=condition.reason,
                    score=new.score,
                    band=new.band.value,
                ),
            )
