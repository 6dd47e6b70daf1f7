"""A configuration change is path-independent: an experiment applied and rolled back leaves
every account's score and band as they were (hysteresis rebased, not carried over from the
experiment's bands), and the experiment's lower scores never fire a score-drop alert.

Scores are set exactly as in the alert tests: only recency counts, from 0 (100 days since the
last use) to 100 (used today), so an account's score is 100 minus the days since its last use.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from testkit import RECENCY_ONLY, store_native
from webhooks.store import keys
from webhooks.store.models import Account, Alert, HealthSnapshot
from webhooks.worker.loop import Pipeline
from webhooks.worker.options import WorkerOptions

ACCOUNTS = 300
V1: dict[str, Any] = {
    **RECENCY_ONLY,
    "bands": {"healthy_min": 70, "at_risk_below": 50, "hysteresis": 3},
    "alerts": [{"name": "fell", "when": "score_drop", "points": 15, "days": 30}],
}


def experiment() -> dict[str, Any]:
    """Recency judged three times as harshly (at risk after 60 days instead of 100), the
    collaboration signal weighed in, a wider hysteresis: most scores fall a long way."""
    document: dict[str, Any] = {**V1, "signals": dict(V1["signals"])}
    active_use = dict(document["signals"]["active_use"])
    indicators = dict(active_use["indicators"])
    indicators["recency_days"] = {"at_risk": 60, "healthy": 0, "weight": 1}
    document["signals"] = {
        **document["signals"],
        "active_use": {**active_use, "indicators": indicators},
        "collaboration": {"weight": 0.5},
    }
    document["bands"] = {**V1["bands"], "hysteresis": 5}
    return document


class Fleet:
    def __init__(self, service: Any) -> None:
        self.service = service
        start = datetime.now(UTC) + timedelta(hours=1)
        self.now = start.replace(minute=10, second=0, microsecond=0)
        self.pipeline = Pipeline(
            sessions=service.runtime.sessions,
            connections=service.runtime.connections,
            options=WorkerOptions(recompute_chunk=128),
            clock=lambda: self.now,
            channels={},
        )
        self.headers: dict[str, str] = {}

    async def admin(self) -> None:
        async with self.service.runtime.sessions() as session, session.begin():
            _, key = await keys.create(
                session, name="alice", role="global_admin", connection="default", now=self.now
            )
        self.headers = {"Authorization": f"Bearer {key}"}

    async def use(self, scores: dict[str, int]) -> None:
        """Usage that puts each account at its score now, then the worker's rescore."""
        events: list[dict[str, object]] = []
        for account, target in scores.items():
            at = self.now - timedelta(days=100 - target)
            events.append({"type": "usage", "account": account, "user": "u1", "at": at.isoformat()})
            events.append(
                {
                    "type": "account",
                    "account": account,
                    "attributes": {"name": f"Account {account}", "seats": 10},
                    "at": self.now.isoformat(),
                }
            )
        await store_native(self.service.runtime, events)
        while (await self.pipeline.process_inbox()).processed:
            pass

    async def change(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A configuration change through the API, then the recompute it queued."""
        current = await self.service.client.get("/api/v1/config", headers=self.headers)
        headers = {**self.headers, "If-Match": current.headers["ETag"]}
        if body is None:
            response = await self.service.client.post(path, headers=headers)
        else:
            response = await self.service.client.put(path, json=body, headers=headers)
        assert response.status_code == 200, response.text
        self.now += timedelta(minutes=5)
        while await self.pipeline.recompute_step():
            pass
        return dict(response.json())

    async def health(self) -> dict[str, tuple[int | None, str]]:
        async with self.service.runtime.sessions() as session:
            rows = (await session.execute(select(Account))).scalars().all()
        return {row.crm_id: (row.score, row.band) for row in rows}

    async def alerts(self) -> list[Alert]:
        async with self.service.runtime.sessions() as session:
            return list((await session.execute(select(Alert).order_by(Alert.id))).scalars())


async def test_an_experiment_rolled_back_restores_every_score_and_band(service) -> None:
    fleet = Fleet(service)
    await fleet.admin()
    first = await fleet.change("/api/v1/config", {"config": V1, "comment": "recency only"})
    rng = random.Random(20)
    names = [str(1000 + index) for index in range(ACCOUNTS)]
    # A month ago: spread over every band; then today, each account moved. A third end just
    # above at_risk_below: those that were at risk a month ago stay there (hysteresis), the
    # others are neutral; exactly what a rollback must give back.
    month_ago = {name: rng.randint(20, 90) for name in names}
    today = {
        name: rng.randint(50, 52) if index % 3 == 0 else rng.randint(max(s - 31, 5), 95)
        for index, (name, s) in enumerate(month_ago.items())
    }
    await fleet.use(month_ago)
    fleet.now += timedelta(days=31)
    await fleet.use(today)
    before = await fleet.health()
    held = [n for n in names if before[n][1] == "at_risk" and (before[n][0] or 0) >= 50]
    neutral_low = [n for n in names if before[n][1] == "neutral" and (before[n][0] or 0) < 53]
    assert len(held) > 20
    assert len(neutral_low) > 20
    alerts_before = len(await fleet.alerts())

    fleet.now += timedelta(hours=1)
    await fleet.change("/api/v1/config", {"config": experiment(), "comment": "experiment"})
    during = await fleet.health()
    fell = [n for n in names if (during[n][0] or 0) <= (before[n][0] or 0) - 15]
    assert len(fell) > ACCOUNTS // 2  # the experiment lowers scores a long way...
    assert len(await fleet.alerts()) == alerts_before  # ...and that is no customer's fall

    fleet.now += timedelta(hours=1)
    rolled = await fleet.change(f"/api/v1/config/versions/{first['version_id']}/rollback")
    assert rolled["version"] == first["version"]
    assert await fleet.health() == before
    assert len(await fleet.alerts()) == alerts_before
    # The account's chart marks both changes: the fall and the recovery were the configuration's.
    detail = await service.client.get(f"/api/v1/accounts/{fell[0]}", headers=fleet.headers)
    assert detail.status_code == 200, detail.text
    history = detail.json()["history"]
    marked = [point["score"] for point in history if point["config_change"]]
    assert marked == [during[fell[0]][0], before[fell[0]][0]]


async def test_changing_only_an_alert_rule_rebases_nothing(service) -> None:
    fleet = Fleet(service)
    await fleet.admin()
    await fleet.change("/api/v1/config", {"config": V1})
    names = [str(2000 + index) for index in range(30)]
    await fleet.use(dict.fromkeys(names, 30))  # at risk
    fleet.now += timedelta(days=1)
    await fleet.use(dict.fromkeys(names, 51))  # held at risk by the hysteresis
    before = await fleet.health()
    assert set(before.values()) == {(51, "at_risk")}
    async with service.runtime.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(HealthSnapshot))

    louder = {**V1, "alerts": [{"name": "fell", "when": "score_drop", "points": 5, "days": 30}]}
    await fleet.change("/api/v1/config", {"config": louder})

    assert await fleet.health() == before
    async with service.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(HealthSnapshot)) == rows
