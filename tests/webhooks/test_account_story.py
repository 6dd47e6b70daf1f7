"""The account page's story over HTTP, on SQLite and PostgreSQL: the indicator catalog, the
detail's indicators (labels, units, explanations, points, no-data ones), configuration markers
and contacts, why a score moved, and the timeline; keys see only their own connection.

Accounts are built the way the service builds them: native events through the worker. The
configuration in force since long ago is the default one with no minimum coverage, so an
account known only by its usage gets a score.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signals.config import HealthConfig
from testkit import Checkouts, native, store_native
from webhooks.store import configs, keys
from webhooks.store.models import Account

NO_CRM = {"hubspot_access_token": None}
ADMIN_TOKEN = "story-test-admin-token"
MINUS = "\N{MINUS SIGN}"
ANY_COVERAGE: dict[str, Any] = {"bands": {"min_coverage": 0}, "alerts": []}
# Recency from 0 (60 days) to 100 (today): the stricter-than-default change of the tests.
LENIENT_RECENCY: dict[str, Any] = {
    **ANY_COVERAGE,
    "signals": {"active_use": {"indicators": {"recency_days": {"at_risk": 60, "healthy": 0}}}},
}
USERS = [f"u{n}" for n in range(8)]


async def bearer(service: Any, *, role: str, connection: str = "default") -> dict[str, str]:
    async with service.runtime.sessions() as session, session.begin():
        _, key = await keys.create(
            session, name=f"{role}-key", role=role, connection=connection, now=datetime.now(UTC)
        )
    return {"Authorization": f"Bearer {key}"}


async def process(service: Any, events: list[dict[str, object]]) -> None:
    await store_native(service.runtime, events)
    report = await service.runtime.pipeline.process_inbox()
    assert report.processed == len(events), report


async def save_config(service: Any, document: dict[str, Any], *, days_ago: float, comment: str):
    async with service.runtime.sessions() as session, session.begin():
        return await configs.save(
            session,
            config=HealthConfig.model_validate(document),
            author="alice",
            comment=comment,
            now=datetime.now(UTC) - timedelta(days=days_ago),
        )


@pytest.fixture
async def service(service_factory: Any) -> Any:
    service = await service_factory(**NO_CRM, admin_token=ADMIN_TOKEN)
    await save_config(service, ANY_COVERAGE, days_ago=200, comment="any coverage")
    # acme: 10 seats; eight people used it every day from 60 to 32 days ago, then stopped.
    await process(
        service, [native("account", "acme", days_ago=70, attributes={"name": "Acme", "seats": 10})]
    )
    await process(
        service,
        [
            native("usage", "acme", days_ago=day, user=user)
            for day in range(32, 61)
            for user in USERS
        ],
    )
    # Another connection's account: never visible to the default connection's keys.
    async with service.runtime.sessions() as session, session.begin():
        session.add(
            Account(
                connection="emea", crm="native", crm_id="9", name="Acme EMEA", attributes={},
                band="at_risk", score=10, created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    return service


@pytest.fixture
async def viewer(service: Any) -> dict[str, str]:
    return await bearer(service, role="viewer")


async def get(service: Any, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = await service.client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def names(response: Any, field: str) -> bool:
    """A 422 names the field: in FastAPI's error list (loc) or in the service's message."""
    assert response.status_code == 422, response.text
    return field in str(response.json()["detail"])


# --- the catalog --------------------------------------------------------------------------------


async def test_the_catalog_lists_every_indicator_with_label_unit_and_explanation(
    service, viewer
) -> None:
    body = await get(service, "/api/v1/indicators", viewer)
    signals = {signal["name"]: signal for signal in body["signals"]}
    assert list(signals) == ["active_use", "collaboration", "mutual_value", "momentum"]
    active = signals["active_use"]
    assert (active["label"], active["weight"], active["custom"]) == ("Active use", 0.4, False)
    assert active["question"] == "do people actually use what was sold?"
    seats = active["indicators"][0]
    assert seats == {
        "name": "seat_utilization",
        "label": "Seat utilization",
        "unit": "percent",
        "explanation": "Share of paid seats used in the last 30 days (people active / seats); "
        "higher is better.",
        "at_risk": 0.4,
        "healthy": 0.7,
        "weight": 1.0,
        "optional": False,
        "custom": False,
    }
    recency = next(i for i in active["indicators"] if i["name"] == "recency_days")
    assert (recency["unit"], recency["at_risk"], recency["healthy"]) == ("days", 14, 3)


async def test_the_catalog_follows_the_configuration_in_force_custom_parts_included(
    service, viewer
) -> None:
    await save_config(
        service,
        {
            **LENIENT_RECENCY,
            "custom_signals": [{"name": "adoption", "label": "Adoption", "weight": 0.2}],
            "custom_indicators": [
                {"name": "exporters", "label": "People exporting", "signal": "adoption",
                 "source": {"kind": "product_events", "features": ["Report Exported"],
                            "aggregation": "users"}, "at_risk": 0, "healthy": 5},
                {"name": "renewal", "label": "Days to renewal", "signal": "momentum",
                 "source": {"kind": "crm_property", "hubspot": "renews_on",
                            "value": "days_until"}, "at_risk": 30, "healthy": 120},
            ],
        },
        days_ago=0,
        comment="adoption",
    )  # fmt: skip
    body = await get(service, "/api/v1/indicators", viewer)
    signals = {signal["name"]: signal for signal in body["signals"]}
    recency = next(i for i in signals["active_use"]["indicators"] if i["name"] == "recency_days")
    assert (recency["at_risk"], recency["healthy"]) == (60, 0)
    adoption = signals["adoption"]
    assert (adoption["custom"], adoption["label"], adoption["weight"]) == (True, "Adoption", 0.2)
    (exporters,) = adoption["indicators"]
    assert (exporters["unit"], exporters["custom"]) == ("count", True)
    assert exporters["explanation"] == (
        "People who used Report Exported in the last 30 days; higher is better."
    )
    renewal = signals["momentum"]["indicators"][-1]
    assert (renewal["name"], renewal["unit"]) == ("renewal", "days")
    assert renewal["explanation"] == (
        "Days until the date in the CRM field renews_on (HubSpot) (0 once it is past); higher "
        "is better."
    )


async def test_the_catalog_needs_a_reading_key(service) -> None:
    response = await service.client.get(
        "/api/v1/indicators", headers=await bearer(service, role="ingest")
    )
    assert response.status_code == 403
    assert (await service.client.get("/api/v1/indicators")).status_code == 401


# --- the detail ---------------------------------------------------------------------------------


async def test_the_detail_explains_each_indicator_and_lists_those_without_data(
    service, viewer
) -> None:
    body = await get(service, "/api/v1/accounts/acme", viewer)
    active = {i["name"]: i for i in body["indicators"]["active_use"]}
    seats = active["seat_utilization"]
    assert (seats["label"], seats["unit"], seats["raw"], seats["score"]) == (
        "Seat utilization", "percent", 0.0, 0.0,
    )  # fmt: skip
    assert seats["explanation"].endswith("higher is better.")
    assert seats["share"] == seats["weight"] == pytest.approx(1 / 3, abs=1e-4)
    assert (seats["points"], seats["at_risk"], seats["healthy"]) == (0.0, 0.4, 0.7)
    assert seats["weight_in_signal"] == 1.0
    # No one used it for a month: stickiness has no data; listed, after those with data.
    assert list(active)[-3:] == ["stickiness", "depth_trend", "key_feature_adoption"]
    assert {k: active["stickiness"][k] for k in ("raw", "score", "share", "points")} == {
        "raw": None, "score": None, "share": 0.0, "points": 0.0,
    }  # fmt: skip
    # Nothing else was ever sent: the other signals' indicators are listed without data.
    (arr,) = body["indicators"]["momentum"]
    assert (arr["name"], arr["raw"], arr["unit"]) == ("arr_change", None, "change")
    points = sum(i["points"] for lines in body["indicators"].values() for i in lines)
    assert round(points) == body["score"]


async def test_the_detail_marks_the_configuration_changes_of_90_days(service, viewer) -> None:
    await save_config(service, ANY_COVERAGE | {"bands": {"min_coverage": 0.1}}, days_ago=100,
                      comment="too old")  # fmt: skip
    version = await save_config(service, LENIENT_RECENCY, days_ago=10, comment="lenient recency")
    body = await get(service, "/api/v1/accounts/acme", viewer)
    (change,) = body["config_changes"]
    assert (change["version"], change["author"], change["comment"]) == (
        version.id, "alice", "lenient recency",
    )  # fmt: skip
    at = datetime.fromisoformat(change["at"])
    assert abs(at - (datetime.now(UTC) - timedelta(days=10))) < timedelta(minutes=5)


async def test_the_detail_lists_contacts_executives_first_then_by_latest_interaction(
    service, viewer
) -> None:
    contact = "contact"
    for event in (
        native(contact, "acme", days_ago=150, contact="eve@acme.example", title="CTO",
               executive=True),
        native(contact, "acme", days_ago=120, contact="eve@acme.example", title="CTO",
               executive=True, left=True),
        native(contact, "acme", days_ago=40, contact="carol@acme.example", title="CFO",
               executive=True),
        native(contact, "acme", days_ago=30, contact="bob@acme.example", title="Engineer"),
        native(contact, "acme", days_ago=20, contact="dana@acme.example", title="Head of Ops",
               executive=True),
        native("interaction", "acme", days_ago=10, channel="meeting", direction="ours",
               contact="dana@acme.example"),
        native("interaction", "acme", days_ago=2, channel="email", direction="customer",
               contact="bob@acme.example"),
        native(contact, "acme", days_ago=5, contact="dana@acme.example", title="Head of Ops",
               executive=True, left=True),
    ):  # fmt: skip
        await process(service, [event])  # one by one: each contact's first sighting stays
    body = await get(service, "/api/v1/accounts/acme", viewer)
    people = body["contacts"]
    assert [p["contact"] for p in people] == [
        "dana@acme.example", "carol@acme.example", "bob@acme.example",
    ]  # fmt: skip
    assert body["contacts_total"] == 3
    dana, carol, bob = people
    now = datetime.now(UTC)
    assert (dana["title"], dana["executive"]) == ("Head of Ops", True)
    assert abs(datetime.fromisoformat(dana["first_seen_at"]) - (now - timedelta(days=20))) < (
        timedelta(minutes=5)
    )
    assert abs(datetime.fromisoformat(dana["left_at"]) - (now - timedelta(days=5))) < timedelta(
        minutes=5
    )
    assert (carol["left_at"], carol["last_interaction_at"]) == (None, None)
    assert abs(
        datetime.fromisoformat(bob["last_interaction_at"]) - (now - timedelta(days=2))
    ) < timedelta(minutes=5)


# --- why it moved -------------------------------------------------------------------------------


async def test_usage_that_stops_shows_seat_use_and_recency_as_the_main_negative_parts(
    service, viewer
) -> None:
    now = datetime.now(UTC)
    body = await get(
        service,
        "/api/v1/accounts/acme/movement",
        viewer,
        start=(now - timedelta(days=31)).isoformat(),
    )
    assert (body["start"]["score"], body["start"]["band"]) == (100, "healthy")
    assert (body["end"]["score"], body["end"]["band"]) == (0, "at_risk")
    assert body["change"] == -100
    assert (body["configuration_changed"], body["configuration_points"]) == (False, 0.0)
    assert body["start"]["config_version"] == body["end"]["config_version"] is not None
    parts = {part["name"]: part for part in body["indicators"]}
    assert set(parts) == {"seat_utilization", "recency_days", "stickiness"}
    seats, recency = parts["seat_utilization"], parts["recency_days"]
    assert seats["points"] == pytest.approx(-33.3, abs=0.1)
    assert recency["points"] == pytest.approx(-33.3, abs=0.1)
    assert (seats["before"], seats["after"]) == (0.8, 0.0)
    assert seats["text"] == "Seat utilization fell from 80% to 0%"
    assert recency["text"].startswith("Days since last use rose from ")
    assert parts["stickiness"]["text"].startswith("Stickiness (DAU/MAU) has no data now (was ")
    assert body["summary"].startswith(
        "The score fell 100 points, from 100 (Healthy) to 0 (At risk), between "
    )
    assert f"Seat utilization fell from 80% to 0% ({MINUS}33 points)" in body["summary"]
    assert f"{recency['text']} ({MINUS}33 points)" in body["summary"]
    total = body["configuration_points"] + body["other_points"]
    total += sum(signal["points"] for signal in body["signals"])
    assert total == pytest.approx(body["change"], abs=1e-9)
    assert [s["signal"] for s in body["signals"]] == [
        "active_use", "collaboration", "mutual_value", "momentum",
    ]  # fmt: skip


async def test_a_configuration_change_between_the_dates_is_its_own_part(service, viewer) -> None:
    version = await save_config(service, LENIENT_RECENCY, days_ago=10, comment="lenient")
    now = datetime.now(UTC)
    body = await get(
        service,
        "/api/v1/accounts/acme/movement",
        viewer,
        start=(now - timedelta(days=31)).date().isoformat(),
    )
    assert body["configuration_changed"] is True
    assert body["end"]["config_version"] == version.id
    assert body["start"]["config_version"] != version.id
    # Under the lenient recency the end's 32 days without use score 47 of 100, a third of it.
    assert body["configuration_points"] == pytest.approx(100 / 3 * 28 / 60, abs=0.2)
    total = body["configuration_points"] + body["other_points"]
    total += sum(signal["points"] for signal in body["signals"])
    assert total == pytest.approx(body["change"], abs=1e-9)
    # It went the other way than the score: said after the parts that went the score's way.
    assert body["summary"].endswith(" The scoring configuration changed in between (+16 points).")
    # The indicators' parts are worked out under the start's configuration.
    recency = next(part for part in body["indicators"] if part["name"] == "recency_days")
    assert recency["score_after"] == 0.0


async def test_the_movement_defaults_to_the_last_30_days(service, viewer) -> None:
    body = await get(service, "/api/v1/accounts/acme/movement", viewer)
    start, end = (datetime.fromisoformat(body[k]["at"]) for k in ("start", "end"))
    assert end - start == timedelta(days=30)
    assert abs(end - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "last tuesday"}, "start"),
        ({"end": "2026-13-01"}, "end"),
        ({"end": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "end"),
        ({"start": (datetime.now(UTC) - timedelta(days=401)).isoformat()}, "start"),
        ({"start": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
          "end": (datetime.now(UTC) - timedelta(days=2)).isoformat()}, "start"),
        ({"start": "0001-01-01T00:00:00+01:00"}, "start"),
        ({"start": "x" * 65}, "start"),
    ],
)  # fmt: skip
async def test_a_bad_movement_window_is_422_naming_the_parameter(
    service, viewer, params, field
) -> None:
    response = await service.client.get(
        "/api/v1/accounts/acme/movement", params=params, headers=viewer
    )
    assert names(response, field)


# --- the timeline -------------------------------------------------------------------------------


async def test_the_timeline_has_every_week_and_the_events_newest_first(service, viewer) -> None:
    await save_config(service, LENIENT_RECENCY, days_ago=6, comment="lenient")
    await process(
        service,
        [
            native("usage", "acme", days_ago=3, user="u1"),
            native("interaction", "acme", days_ago=3, channel="meeting", direction="ours",
                   contact="dana@initech.example"),
            native("ticket", "acme", days_ago=4, ticket="T-2", priority="urgent"),
            native("interaction", "acme", days_ago=9, channel="email", direction="customer"),
            native("collaboration", "acme", days_ago=12, kind="beta"),
            native("interaction", "acme", days_ago=50, channel="call", direction="ours"),
        ],
    )  # fmt: skip
    body = await get(service, "/api/v1/accounts/acme/timeline", viewer, days=28)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=27)
    monday = first - timedelta(days=first.weekday())
    weeks = body["weeks"]
    assert [w["week"] for w in weeks] == [
        (monday + timedelta(weeks=n)).isoformat() for n in range(len(weeks))
    ]
    assert weeks[-1]["week"] == (today - timedelta(days=today.weekday())).isoformat()
    assert monday <= first < monday + timedelta(days=7)
    assert sum(w["interactions_ours"] for w in weeks) == 1  # 50 days ago is out of the window
    assert sum(w["interactions_customer"] for w in weeks) == 1
    assert (sum(w["tickets"] for w in weeks), sum(w["escalations"] for w in weeks)) == (1, 1)
    assert sum(w["collaborations"] for w in weeks) == 1
    assert any(all(v == 0 for k, v in w.items() if k != "week") for w in weeks)  # zeros kept
    used = next(w for w in weeks if w["active_users"])
    assert used["active_users"] == 1
    assert [w["active_users"] for w in weeks].count(0) == len(weeks) - 1
    events = body["events"]
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)
    texts = [(e["kind"], e["text"]) for e in events if e["kind"] != "band_change"]
    assert texts == [
        ("interaction", "Meeting with dana@initech.example \N{EM DASH} we reached out"),
        ("ticket", "Ticket T-2 opened (urgent)"),
        ("config_change", "Configuration changed by alice: lenient"),
        ("interaction", "Email \N{EM DASH} they reached out"),
        ("collaboration", "Beta"),
    ]
    ticket = next(e for e in events if e["kind"] == "ticket")
    assert ticket["detail"] == {"ticket": "T-2", "priority": "urgent"}
    assert body["truncated"] is False
    assert body["days"] == 28


async def test_the_timeline_says_contacts_gained_and_lost_and_band_changes(service, viewer) -> None:
    await process(service, [native("contact", "acme", days_ago=8, contact="dana@acme.example",
                                   title="Head of Ops", executive=True)])  # fmt: skip
    await process(service, [native("contact", "acme", days_ago=2, contact="dana@acme.example",
                                   title="Head of Ops", executive=True, left=True)])  # fmt: skip
    body = await get(service, "/api/v1/accounts/acme/timeline", viewer)
    assert body["days"] == 90
    texts = [e["text"] for e in body["events"]]
    assert "Contact left: dana@acme.example (Head of Ops, executive)" in texts
    assert "Contact gained: dana@acme.example (Head of Ops, executive)" in texts
    assert texts.index("Contact left: dana@acme.example (Head of Ops, executive)") < texts.index(
        "Contact gained: dana@acme.example (Head of Ops, executive)"
    )
    bands = [e for e in body["events"] if e["kind"] == "band_change"]
    assert bands, body["events"]
    assert all(e["text"].startswith("Band: ") for e in bands)


@pytest.mark.parametrize("days", [6, 366, "many"])
async def test_a_bad_timeline_window_is_422_naming_days(service, viewer, days) -> None:
    response = await service.client.get(
        "/api/v1/accounts/acme/timeline", params={"days": days}, headers=viewer
    )
    assert names(response, "days")


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/accounts/9/movement", "/api/v1/accounts/9/timeline",
                                  "/api/v1/accounts/nobody/movement"])  # fmt: skip
async def test_another_connections_account_is_404(service, viewer, path) -> None:
    assert (await service.client.get(path, headers=viewer)).status_code == 404


async def test_a_key_of_the_other_connection_sees_its_own_account_only(service) -> None:
    emea = await bearer(service, role="viewer", connection="emea")
    for path in ("/api/v1/accounts/acme/movement", "/api/v1/accounts/acme/timeline"):
        assert (await service.client.get(path, headers=emea)).status_code == 404
    assert (await service.client.get("/api/v1/accounts/9/timeline", headers=emea)).status_code == (
        200
    )


async def test_the_story_reads_only_through_the_read_engine(service) -> None:
    main, reads = Checkouts(service.runtime.engine), Checkouts(service.runtime.read_engine)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in ("/api/v1/indicators", "/api/v1/accounts/acme/movement",
                 "/api/v1/accounts/acme/timeline"):  # fmt: skip
        response = await service.client.get(path, headers=admin)
        assert response.status_code == 200, response.text
    assert (main.count, reads.count > 0) == (0, True)
