"""The customer's voice: what survey answers say about an account.

An account's NPS over the last 90 days is the share of promoters (9-10) minus the share of
detractors (0-6), from -100 to 100; its CSAT is the mean answer (1-5). Fewer than
MIN_RESPONSES answers in the window is no data: one unhappy answer from three months ago is
not the account's verdict. The latest answer (within LATEST_DAYS) is kept as well, for the
small accounts where one person speaks for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(days=90)
LATEST_DAYS = 180
MIN_RESPONSES = 3
PROMOTER_MIN = 9
DETRACTOR_MAX = 6


@dataclass(frozen=True, slots=True)
class Answer:
    kind: str
    at: datetime
    score: float


@dataclass(frozen=True, slots=True)
class Voice:
    nps_90d: float | None = None
    nps_latest: float | None = None
    csat_90d: float | None = None
    csat_latest: float | None = None


NO_VOICE = Voice()


def net_promoter_score(scores: Sequence[float]) -> float:
    promoters = sum(1 for score in scores if score >= PROMOTER_MIN)
    detractors = sum(1 for score in scores if score <= DETRACTOR_MAX)
    return 100.0 * (promoters - detractors) / len(scores)


def voice(answers: Iterable[Answer], as_of: datetime) -> Voice:
    """An account's survey measures at `as_of` from its answers, oldest first. Answers older
    than LATEST_DAYS count for nothing; later ones count as recent (the worker reads windows
    open-ended; a backtest passes only the answers up to its moment)."""
    window_start = as_of - WINDOW
    latest_start = as_of - timedelta(days=LATEST_DAYS)
    recent: dict[str, list[float]] = {"nps": [], "csat": []}
    latest: dict[str, float] = {}
    for answer in answers:
        if answer.kind not in recent or answer.at <= latest_start:
            continue
        latest[answer.kind] = answer.score
        if answer.at > window_start:
            recent[answer.kind].append(answer.score)
    nps, csat = recent["nps"], recent["csat"]
    return Voice(
        nps_90d=net_promoter_score(nps) if len(nps) >= MIN_RESPONSES else None,
        nps_latest=latest.get("nps"),
        csat_90d=sum(csat) / len(csat) if len(csat) >= MIN_RESPONSES else None,
        csat_latest=latest.get("csat"),
    )


def survey_value(
    answers: Sequence[Answer],
    as_of: datetime,
    *,
    kind: str,
    aggregation: str,
    days: int,
    min_responses: int,
) -> float | None:
    """A custom indicator's value from an account's answers, oldest first
    (signals.config.SurveySource): answers of `kind` after `as_of` - `days` (later ones count,
    as in `voice`). None where it has no answer to speak of; a count of none is 0."""
    start = as_of - timedelta(days=days)
    scores = [answer.score for answer in answers if answer.kind == kind and answer.at > start]
    if aggregation == "responses":
        return float(len(scores))
    if aggregation == "latest":
        return scores[-1] if scores else None
    if len(scores) < min_responses:
        return None
    return net_promoter_score(scores) if aggregation == "nps" else sum(scores) / len(scores)
