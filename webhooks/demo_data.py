"""The demo's sample data: companies drawn from five archetypes (the ideas of docs/signals.md
in the flesh), each with a deterministic 180-day trajectory of product usage, conversations,
contacts, tickets, co-innovation, NPS answers and ARR, its lifecycle stage in the CRM, and
its renewal decision."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connector.sandbox.seed import SEEDED_OWNERS

DAYS = 180  # the sample's activity period

_NAMES = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka",
    "Tyrell", "Cyberdyne", "Soylent", "Aperture", "Oscorp", "Gringotts", "Monarch", "Pied Piper",
    "Dunder Mifflin", "Prestige", "Sterling", "Massive Dynamic", "Virtucon", "Nakatomi",
    "Bluth", "Krusty", "Duff", "Genco", "Rekall", "Weyland", "Zorg",
)  # fmt: skip
_SUFFIXES = (
    "Labs", "Corp", "Systems", "Analytics", "Logistics", "Health", "Retail", "Energy", "Foods",
    "Media", "Capital", "Robotics",
)  # fmt: skip
_TITLES = (
    "Operations Manager", "Product Owner", "Team Lead", "IT Administrator", "Analyst",
    "Project Manager", "Engineer",
)  # fmt: skip
_EXECUTIVE_TITLES = ("Chief Operating Officer", "VP Engineering", "Chief Financial Officer")
# What the demo product's users do: the features an admin of it marks as key (the demo's
# configuration sets them), and the others.
DEMO_KEY_FEATURES = ("Report Exported", "Dashboard Shared")
_OTHER_FEATURES = ("Dashboard Viewed", "Search", "Record Edited", "Settings Opened")
_CO_INNOVATION = ("feedback", "feature_request", "beta", "referral", "case_study", "joint_plan")
# Where the ARR history has a value, in days ago: quarterly before the period (ARR a year
# before any day of it is known), monthly within it.
_ARR_DAYS = (540, 450, 365, 270, 180, 150, 120, 90, 60, 30, 1)


@dataclass(frozen=True, kw_only=True)
class Archetype:
    """How a kind of customer behaves over the 180 days. Pairs are (180 days ago, now) unless
    they say otherwise; the sample draws each company from one archetype."""

    label: str
    expected: str  # the band the idea behind the signals predicts
    weight: int  # companies of this archetype per cycle of the sample
    seats: tuple[int, int]  # range
    active_share: tuple[float, float]  # share of seats using the product in a week
    fade_after: float = 0.0  # share of the period before active_share starts to move
    days_per_week: tuple[float, float]  # active days of an active user
    silent_days: tuple[int, int] = (0, 0)  # range: no use at all in the last days
    interactions_per_month: tuple[float, float]
    customer_share: float  # conversations the customer starts
    contacts: int
    executive: bool
    champion_leaves: bool = False  # the main contact leaves 35-60 days ago
    co_innovation: tuple[int, int]  # range, over the last 360 days
    tickets_per_10_seats: float  # per 90 days
    escalation_share: float  # of tickets, high or urgent
    arr_growth_before: float  # a year, before the period
    arr_change: tuple[float, float]  # range, across the period
    nps: tuple[int, int]  # range of the contacts' NPS answers (0-10)
    # The chance that a usage event is one of the key features (DEMO_KEY_FEATURES).
    key_feature_share: tuple[float, float]


ARCHETYPES: dict[str, Archetype] = {
    # The best customers: they use it, start conversations, co-innovate, and grow.
    "collaborator": Archetype(
        label="healthy collaborators", expected="healthy", weight=3, seats=(10, 30),
        active_share=(0.6, 0.68), days_per_week=(1.9, 2.0), interactions_per_month=(5, 6),
        customer_share=0.4, contacts=6, executive=True, co_innovation=(4, 7),
        tickets_per_10_seats=1.5, escalation_share=0.03, arr_growth_before=0.2,
        arr_change=(0.08, 0.18), nps=(8, 10), key_feature_share=(0.35, 0.4),
    ),
    # Many seats, little use: one contact, we start every conversation, nothing moves.
    "transactional": Archetype(
        label="big but transactional", expected="neutral", weight=2, seats=(80, 200),
        active_share=(0.48, 0.48), days_per_week=(0.75, 0.75), interactions_per_month=(2, 2),
        customer_share=0.05, contacts=1, executive=False, co_innovation=(0, 0),
        tickets_per_10_seats=0.4, escalation_share=0.0, arr_growth_before=0.02,
        arr_change=(0.02, 0.04), nps=(6, 9), key_feature_share=(0.1, 0.1),
    ),
    # Sold to the wrong buyer: few seats, little use, and a heavy support load per seat.
    "poorly_sold": Archetype(
        label="poorly sold", expected="at_risk", weight=2, seats=(12, 30),
        active_share=(0.4, 0.3), days_per_week=(0.6, 0.5), interactions_per_month=(3, 3),
        customer_share=0.15, contacts=2, executive=False, co_innovation=(0, 0),
        tickets_per_10_seats=8.0, escalation_share=0.3, arr_growth_before=0.0,
        arr_change=(-0.15, -0.08), nps=(2, 7), key_feature_share=(0.15, 0.08),
    ),
    # A big account that stopped growing: fair use, spend flat and now shrinking.
    "leveled_off": Archetype(
        label="leveled-off spenders", expected="neutral", weight=1, seats=(70, 140),
        active_share=(0.55, 0.5), days_per_week=(1.0, 1.0), interactions_per_month=(3, 3),
        customer_share=0.15, contacts=2, executive=True, co_innovation=(1, 1),
        tickets_per_10_seats=1.5, escalation_share=0.05, arr_growth_before=0.05,
        arr_change=(-0.2, -0.12), nps=(5, 9), key_feature_share=(0.2, 0.2),
    ),
    # Use fades over the period, to nothing in the last weeks; the champion leaves.
    "fading": Archetype(
        label="fading usage", expected="at_risk", weight=2, seats=(30, 80),
        active_share=(0.65, 0.04), fade_after=0.3, days_per_week=(1.4, 0.5),
        silent_days=(12, 24), interactions_per_month=(3, 0.5), customer_share=0.2, contacts=2,
        executive=False, champion_leaves=True, co_innovation=(0, 0),
        tickets_per_10_seats=0.8, escalation_share=0.0, arr_growth_before=0.05,
        arr_change=(0.0, 0.0), nps=(3, 8), key_feature_share=(0.3, 0.1),
    ),
}  # fmt: skip

# The chance that a customer of each archetype renews at its renewal decision (else it churns):
# the outcomes the backtest checks the bands against. Each company draws its own, so a
# sample's shares stray from these as real ones would. Outcomes are never scored: no band moves.
RENEWAL_RATES: dict[str, float] = {
    "collaborator": 0.95,
    "transactional": 0.85,
    "leveled_off": 0.70,
    "poorly_sold": 0.35,
    "fading": 0.30,
}
# Renewal decisions fall within this many days before now: the backtest reads the facts 30,
# 60 and 90 days before an outcome, and the sample's activity reaches back only DAYS.
RENEWAL_DAYS = 60


def _lerp(pair: tuple[float, float], progress: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * progress


@dataclass(frozen=True, kw_only=True)
class SampleCompany:
    name: str
    archetype: str
    seed: int

    @property
    def owner_id(self) -> str:
        """The sandbox owner the company is assigned to (`hubspot_owner_id`): one with an
        e-mail, so alerts can be routed to the account owner."""
        return SEEDED_OWNERS[self.seed % len(SEEDED_OWNERS)][0]

    def native_events(self, account: str, now: datetime) -> list[dict[str, object]]:
        """The company's 180 days as native events (`POST /ingest/events`): attributes,
        contacts and CRM activity first, then usage newest first, so that even a company too
        big for one worker batch is scored close to its final health on the first part."""
        rng = random.Random(self.seed)
        a = ARCHETYPES[self.archetype]
        seats = rng.randint(*a.seats)
        events: list[dict[str, object]] = []
        events += self._arr_history(account, now, rng, seats)
        contacts, left = self._contacts(account, now, rng, events)
        events += self._collaboration(account, now, rng)
        events += self._interactions(account, now, rng, contacts, left)
        events += self._tickets(account, now, rng, seats)
        # The answers draw from their own generator: everything else stays as it was drawn
        # before the demo had surveys.
        events += self._surveys(account, now, random.Random(f"{self.seed}:surveys"), contacts)
        events += self._usage(account, now, rng, seats, random.Random(f"{self.seed}:features"))
        return events

    def renewal(self, account: str, now: datetime) -> dict[str, object]:
        """The company's renewal decision as a native `outcome` event, on a day of the last
        RENEWAL_DAYS: renewed at its archetype's rate, else churned. Its own generator: the
        activity stays as drawn before the demo had outcomes."""
        rng = random.Random(f"{self.seed}:renewal")
        at = now - timedelta(days=rng.uniform(1, RENEWAL_DAYS))
        renewed = rng.random() < RENEWAL_RATES[self.archetype]
        return _native("outcome", account, at, {"outcome": "renewed" if renewed else "churned"})

    def _surveys(
        self, account: str, now: datetime, rng: random.Random, contacts: Sequence[str]
    ) -> list[dict[str, object]]:
        """An NPS round each quarter (about 20 and 110 days ago): most contacts answer, on
        the archetype's side of the scale."""
        a = ARCHETYPES[self.archetype]
        events = []
        for round_days in (20, 110):
            for contact in contacts:
                if rng.random() < 0.8:
                    events.append(
                        _native(
                            "survey",
                            account,
                            now - timedelta(days=round_days + rng.uniform(0, 6)),
                            {"kind": "nps", "score": rng.randint(*a.nps),
                             "respondent": contact},
                        )
                    )  # fmt: skip
        return events

    def _arr_history(
        self, account: str, now: datetime, rng: random.Random, seats: int
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        at_start = seats * rng.choice((600, 900, 1200))  # ARR when the period began
        change = rng.uniform(*a.arr_change)
        events = []
        for days in _ARR_DAYS:
            if days >= DAYS:
                arr = at_start * (1 + a.arr_growth_before) ** (-(days - DAYS) / 365)
            else:
                arr = at_start * (1 + change * (DAYS - days) / DAYS)
            attributes: dict[str, object] = {"arr": round(arr, -2)}
            if days == _ARR_DAYS[0]:
                renewal = now + timedelta(days=rng.randint(5, 365))
                attributes |= {
                    "seats": seats,
                    "segment": self.archetype,
                    "owner": self.owner_id,
                    "renewal_date": renewal.date().isoformat(),
                }
            events.append(
                _native("account", account, now - timedelta(days=days), {"attributes": attributes})
            )
        return events

    def _contacts(
        self, account: str, now: datetime, rng: random.Random, events: list[dict[str, object]]
    ) -> tuple[list[str], int | None]:
        """The contacts (an executive first when the archetype has one) and, when the champion
        leaves, how many days ago."""
        a = ARCHETYPES[self.archetype]
        contacts = [f"{account}-c{index}" for index in range(a.contacts)]
        for index, contact in enumerate(contacts):
            executive = a.executive and index == 0
            title = rng.choice(_EXECUTIVE_TITLES if executive else _TITLES)
            events.append(
                _native("contact", account, now - timedelta(days=DAYS + 20),
                        {"contact": contact, "title": title, "executive": executive})
            )  # fmt: skip
        left = rng.randint(35, 60) if a.champion_leaves else None
        if left is not None:
            events.append(
                _native("contact", account, now - timedelta(days=left),
                        {"contact": contacts[0], "left": True})
            )  # fmt: skip
        return contacts, left

    def _collaboration(
        self, account: str, now: datetime, rng: random.Random
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        count = rng.randint(*a.co_innovation)
        if not count:
            return []
        # Evenly spread with some jitter: a steady collaborator has two in any six months.
        span = 2 * DAYS if count > 1 else DAYS
        return [
            _native(
                "collaboration",
                account,
                now - timedelta(days=(index + rng.uniform(0.2, 0.8)) * span / count),
                {"kind": rng.choice(_CO_INNOVATION)},
            )
            for index in range(count)
        ]

    def _interactions(
        self,
        account: str,
        now: datetime,
        rng: random.Random,
        contacts: Sequence[str],
        left: int | None,
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        events = []
        for month in range(DAYS // 30):
            progress = 1 - (month * 30 + 15) / DAYS
            expected = _lerp(a.interactions_per_month, progress)
            count = int(expected) + (rng.random() < expected % 1)
            for _ in range(count):
                days = month * 30 + rng.uniform(0, 30)
                present = [c for i, c in enumerate(contacts) if i or left is None or days > left]
                customer = rng.random() < a.customer_share
                events.append(
                    _native(
                        "interaction",
                        account,
                        now - timedelta(days=days),
                        {
                            "channel": rng.choice(("email", "email", "call", "meeting")),
                            "direction": "customer" if customer else "ours",
                            "contact": rng.choice(present) if present else None,
                        },
                    )
                )
            if a.executive:
                # A business review with the executive sponsor every month.
                events.append(
                    _native(
                        "interaction",
                        account,
                        now - timedelta(days=month * 30 + rng.uniform(5, 25)),
                        {"channel": "meeting", "direction": "ours", "contact": contacts[0]},
                    )
                )
        return events

    def _tickets(
        self, account: str, now: datetime, rng: random.Random, seats: int
    ) -> list[dict[str, object]]:
        a = ARCHETYPES[self.archetype]
        expected = seats / 10 * a.tickets_per_10_seats * DAYS / 90
        count = max(0, round(expected * rng.uniform(0.8, 1.2)))
        events = []
        for index in range(count):
            escalated = rng.random() < a.escalation_share
            events.append(
                _native(
                    "ticket",
                    account,
                    now - timedelta(days=rng.uniform(0, DAYS)),
                    {
                        "ticket": f"{account}-t{index}",
                        "priority": rng.choice(
                            ("high", "urgent") if escalated else ("low", "medium")
                        ),
                    },
                )
            )
        return events

    def _usage(
        self, account: str, now: datetime, rng: random.Random, seats: int, pick: random.Random
    ) -> list[dict[str, object]]:
        """Active user-days drawn week by week from the trajectory: the week's share of seats
        in use picks the active users (the same ones week after week), each uses the product
        on a few days of the week, one event a day (the demo's product is instrumented
        sparsely). `pick` chooses each event's feature, a key one by the archetype's share
        (its own generator: the days drawn stay those of earlier versions of the demo)."""
        a = ARCHETYPES[self.archetype]
        silent = rng.randint(*a.silent_days)
        habit = [rng.uniform(0.6, 1.4) for _ in range(seats)]  # occasional to power users
        events = []
        for week in range((DAYS + 6) // 7):
            progress = 1 - (week * 7 + 3.5) / DAYS
            moved = max(0.0, (progress - a.fade_after) / (1 - a.fade_after))
            share = _lerp(a.active_share, moved)
            per_week = _lerp(a.days_per_week, moved)
            for user in range(int(seats * share)):
                expected = min(7.0, per_week * habit[user])
                count = int(expected) + (rng.random() < expected % 1)
                for weekday in rng.sample(range(7), count):
                    days = week * 7 + weekday
                    if silent <= days < DAYS:
                        at = now - timedelta(days=days, seconds=rng.randrange(36_000))
                        key = pick.random() < _lerp(a.key_feature_share, moved)
                        feature = pick.choice(DEMO_KEY_FEATURES if key else _OTHER_FEATURES)
                        events.append(
                            _native("usage", account, at, {"user": f"u{user}", "feature": feature})
                        )
        events.sort(key=lambda event: str(event["at"]), reverse=True)
        return events


def _native(
    event_type: str, account: str, at: datetime, fields: dict[str, object]
) -> dict[str, object]:
    return {"type": event_type, "account": account, "at": at.isoformat(), **fields}


def sample_companies(count: int, seed: int) -> list[SampleCompany]:
    """Deterministic sample: the same seed gives the same companies and activity. Archetypes
    come in shuffled cycles of their weights, so every sample size holds them all in the same
    proportions."""
    rng = random.Random(seed)
    cycle = [name for name, a in ARCHETYPES.items() for _ in range(a.weight)]
    kinds: list[str] = []
    while len(kinds) < count:
        rng.shuffle(cycle)
        kinds.extend(cycle)
    combos = len(_NAMES) * len(_SUFFIXES)
    companies = []
    for index, kind in enumerate(kinds[:count]):
        name = f"{_NAMES[index % len(_NAMES)]} {_SUFFIXES[(index // len(_NAMES)) % len(_SUFFIXES)]}"
        if index >= combos:
            name += f" {index // combos + 1}"
        companies.append(SampleCompany(name=name, archetype=kind, seed=rng.randrange(2**32)))
    return companies


# Every PROSPECT_EVERY-th sample company is still an opportunity (not a customer: listed, not
# scored); every NEW_CUSTOMER_EVERY-th became a customer days ago (onboarding); the rest are
# customers of long standing.
PROSPECT_EVERY = 25
NEW_CUSTOMER_EVERY = 20


def _is_prospect(index: int) -> bool:
    return index % PROSPECT_EVERY == PROSPECT_EVERY - 1


def _is_new_customer(index: int) -> bool:
    return not _is_prospect(index) and index % NEW_CUSTOMER_EVERY == NEW_CUSTOMER_EVERY - 1


def decides_renewal(index: int) -> bool:
    """Whether the sample company at `index` had a renewal decision (`SampleCompany.renewal`):
    customers of long standing only, as a prospect has nothing to renew and a new customer is
    in its first term."""
    return not _is_prospect(index) and not _is_new_customer(index)


def lifecycle(index: int, now: datetime) -> dict[str, str]:
    if _is_prospect(index):
        return {"lifecyclestage": "opportunity"}
    since = now - timedelta(days=700)
    if _is_new_customer(index):
        since = now - timedelta(days=10 + index % 30)
    stamp = since.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"lifecyclestage": "customer", "hs_lifecyclestage_customer_date": stamp}
