"""Microsoft Teams: an Adaptive Card posted to a Workflows webhook ("Post to a channel when a
webhook request is received").

The body is a message with one Adaptive Card attachment (schema 1.4): title, reason, a FactSet
of the facts, the drivers, a footer and an "Open in CRM" action. A digest is one card listing
every account, each entry opening its CRM record when clicked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.http import HTTPChannel, posts_to_url, sends_http
from webhooks.alerts.channels.kinds import ChannelKind
from webhooks.alerts.notice import AlertNotice

__all__ = ["CARD_VERSION", "DIGEST_LIMIT", "KIND", "TeamsChannel", "teams_message"]

CARD_VERSION: Final = "1.4"
CARD_SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
# Teams refuses cards over about 28 KB; this many entries stay well within it.
DIGEST_LIMIT: Final = 40

Element = dict[str, Any]


# Adaptive Cards' Markdown: emphasis, code, and links ("[text](url)", "<url>"). A backslash
# makes each of these characters plain text, so "[text](url)" is shown as written and links
# nowhere; without its brackets, "(url)" is only text.
_MARKDOWN: Final = re.compile(r"([\\`*_~\[\]<])")
# A line that starts like a list item ("- ", "+ ", "1. ") would become one.
_BULLET_START: Final = re.compile(r"(?m)^(\s*)([-+])(?=\s|$)")
_NUMBER_START: Final = re.compile(r"(?m)^(\s*\d+)\.(?=\s|$)")


def markdown(text: str) -> str:
    """Text from a CRM, a product or a person, shown as written in a TextBlock or a Fact."""
    text = _MARKDOWN.sub(r"\\\1", text)
    text = _BULLET_START.sub(r"\1\\\2", text)
    return _NUMBER_START.sub(r"\1\\.", text)


def _color(notice: AlertNotice) -> str:
    if words.is_recovered(notice):
        return "Good"
    return "Attention" if notice.band == "at_risk" else "Warning"


def _text(text: str, **style: Any) -> Element:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def _open_url(url: str, title: str = "Open in CRM") -> Element:
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def _card(body: list[Element], actions: list[Element]) -> dict[str, Any]:
    card: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def _single(notice: AlertNotice) -> dict[str, Any]:
    body: list[Element] = [
        _text(
            f"{words.marker(notice)} {markdown(words.one_line(words.headline(notice)))}",
            size="Large",
            weight="Bolder",
            color=_color(notice),
        ),
        _text(markdown(words.explanation(notice)), spacing="Small"),
        {
            "type": "FactSet",
            "facts": [
                {"title": "Account", "value": markdown(words.account_label(notice))},
                {"title": "Score", "value": markdown(words.score_text(notice))},
                {"title": "Trend 30d", "value": words.trend_text(notice.trend_30d)},
                {"title": "Owner", "value": markdown(words.owner_text(notice))},
            ],
        },
    ]
    if notice.drivers:
        title = "Drivers now" if words.is_recovered(notice) else "Why"
        body.append(_text(title, weight="Bolder", spacing="Medium"))
        # Adaptive Cards' Markdown: list items separated by \r (as the Teams docs show).
        bullets = "\r".join(f"- {markdown(words.one_line(driver))}" for driver in notice.drivers)
        body.append(_text(bullets, spacing="Small"))
    body.append(
        _text(markdown(words.context_line(notice)), isSubtle=True, size="Small", spacing="Medium")
    )
    url = words.link(notice)
    return _card(body, [_open_url(url)] if url is not None else [])


def _digest_entry(notice: AlertNotice) -> Element:
    items: list[Element] = [
        _text(
            f"{words.marker(notice)} {markdown(words.one_line(words.headline(notice)))}",
            weight="Bolder",
            color=_color(notice),
        ),
        _text(
            markdown(f"{words.account_label(notice)} · {words.compact_line(notice)}"),
            isSubtle=True,
            spacing="None",
        ),
    ]
    if notice.drivers:
        more = f" (+{len(notice.drivers) - 1} more)" if len(notice.drivers) > 1 else ""
        label = "Now" if words.is_recovered(notice) else "Why"
        items.append(
            _text(
                f"{label}: {markdown(words.one_line(notice.drivers[0]))}{more}",
                size="Small",
                spacing="None",
            )
        )
    container: Element = {"type": "Container", "separator": True, "items": items}
    url = words.link(notice)
    if url is not None:
        # The whole entry opens the account in the CRM.
        container["selectAction"] = _open_url(url)
    return container


def _digest(notices: Sequence[AlertNotice]) -> dict[str, Any]:
    shown = notices[:DIGEST_LIMIT]
    body: list[Element] = [_text(words.digest_title(notices), size="Large", weight="Bolder")]
    body.extend(_digest_entry(notice) for notice in shown)
    left_out = notices[len(shown) :]
    if left_out:
        summary = words.digest_counts(left_out)
        body.append(
            _text(
                f"\u2026 and {len(left_out)} more ({summary}): see the alert list in crm-health.",
                separator=True,
            )
        )
    latest = max(notices, key=lambda notice: notice.at)
    body.append(
        _text(
            f"crm-health digest of {len(notices)} · latest {words.when_text(latest.at)}",
            isSubtle=True,
            size="Small",
        )
    )
    return _card(body, [])


def teams_message(notices: Sequence[AlertNotice]) -> dict[str, Any]:
    """The Workflows webhook body: one notice in full, several as a digest card."""
    if not notices:
        raise ValueError("a Teams message needs at least one notice")
    notices = [words.readable(notice) for notice in notices]
    if len(notices) == 1:
        return _single(notices[0])
    return _digest(notices)


class TeamsChannel(HTTPChannel):
    """Posts to a Teams Workflows webhook; the URL (with its signature) is never logged."""

    kind = "teams"

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        if notices:
            await self._post(teams_message(notices))


KIND: Final = ChannelKind(
    type="teams", fields=frozenset({"url"}), sends=sends_http, build=posts_to_url(TeamsChannel)
)
