"""Slack: a Block Kit message posted to an incoming webhook URL.

One notice is a header, a section with the facts as fields, the drivers, an "Open in CRM"
button and a context line; a digest lists every account compactly in one message, within
Slack's limit of 50 blocks. `text` is the fallback notifications and old clients show.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC
from typing import Any, Final

from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.http import HTTPChannel, posts_to_url, sends_http
from webhooks.alerts.channels.kinds import ChannelKind
from webhooks.alerts.notice import AlertNotice

__all__ = ["KIND", "MAX_BLOCKS", "SlackChannel", "slack_message"]

# Slack's limits (Block Kit reference): blocks per message, characters per element.
MAX_BLOCKS: Final = 50
HEADER_LIMIT: Final = 150
FIELD_LIMIT: Final = 2000
SECTION_LIMIT: Final = 3000
URL_LIMIT: Final = 3000
TEXT_LIMIT: Final = 3000
# How many accounts a digest's fallback text names before "and N more".
FALLBACK_NAMES: Final = 10

Block = dict[str, Any]


# Slack's mrkdwn has no escape for its formatting marks. A zero-width space on each side keeps
# a mark from opening or closing bold, italics, strike or code: whether Slack takes it for a
# word character or for a space, the mark is then either inside a word or not next to one.
_MARKS: Final = re.compile(r"[*_~`]")
_ZWSP: Final = "\u200b"


def escape(text: str) -> str:
    """Text shown as written in mrkdwn: &, < and > as entities (so no `<url|label>` link, no
    `<!channel>` or `<@user>` mention), and *, _, ~ and ` as marks that format nothing."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKS.sub(lambda mark: f"{_ZWSP}{mark.group()}{_ZWSP}", text)


def _code(text: str) -> str:
    """Text inside a `code span`: only & < > and the closing backtick mean anything there."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def _link(url: str | None, label: str) -> str:
    if url is None or len(url) > URL_LIMIT:
        return escape(label)
    # "|" separates URL and label in Slack's link syntax; in a URL it can be percent-encoded.
    return f"<{escape(url.replace('|', '%7C'))}|{escape(label)}>"


def _date(notice: AlertNotice) -> str:
    """The time in each reader's own time zone, with UTC as the fallback text."""
    at = notice.at if notice.at.tzinfo is not None else notice.at.replace(tzinfo=UTC)
    seconds = int(at.timestamp())
    return f"<!date^{seconds}^{{date_short_pretty}} {{time}}|{words.when_text(notice.at)}>"


def _plain(text: str, limit: int) -> Block:
    return {"type": "plain_text", "text": words.clip(words.one_line(text), limit), "emoji": True}


def _mrkdwn(text: str, limit: int = SECTION_LIMIT) -> Block:
    # verbatim: Slack makes no links of bare URLs or channel names and parses no mentions
    # beyond the <...> syntax crm-health writes itself (the record link, the date).
    return {"type": "mrkdwn", "text": words.clip(text, limit), "verbatim": True}


def _bullets(items: Sequence[str], *, title: str, limit: int = SECTION_LIMIT) -> str:
    """A bulleted list under a bold title, as many items as fit, then "... and N more"."""
    text = f"*{title}*"
    for index, item in enumerate(items):
        line = f"\n\u2022 {escape(words.one_line(item))}"
        rest = len(items) - index - 1
        reserve = len(f"\n\u2026 and {rest} more") if rest else 0
        if len(text) + len(line) + reserve > limit:
            return text + f"\n\u2026 and {len(items) - index} more"
        text += line
    return text


def _fallback(notice: AlertNotice) -> str:
    text = f"{words.marker(notice)} {words.headline(notice)}: {words.explanation(notice)}"
    return words.clip(escape(words.one_line(text)), TEXT_LIMIT)


def _single(notice: AlertNotice) -> dict[str, Any]:
    url = words.link(notice)
    blocks: list[Block] = [
        {
            "type": "header",
            "text": _plain(f"{words.marker(notice)} {words.headline(notice)}", HEADER_LIMIT),
        },
        {
            "type": "section",
            "text": _mrkdwn(escape(words.explanation(notice))),
            "fields": [
                _mrkdwn(f"*Account*\n{_link(url, words.account_label(notice))}", FIELD_LIMIT),
                _mrkdwn(f"*Score*\n{escape(words.score_text(notice))}", FIELD_LIMIT),
                _mrkdwn(f"*Trend 30d*\n{words.trend_text(notice.trend_30d)}", FIELD_LIMIT),
                _mrkdwn(f"*Owner*\n{escape(words.owner_text(notice))}", FIELD_LIMIT),
            ],
        },
    ]
    if notice.drivers:
        title = "Drivers now" if words.is_recovered(notice) else "Why"
        blocks.append({"type": "section", "text": _mrkdwn(_bullets(notice.drivers, title=title))})
    if url is not None and len(url) <= URL_LIMIT:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": _plain("Open in CRM", 75),
                        "url": url,
                        "action_id": "open_in_crm",
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(
                    f"{'Recovered' if words.is_recovered(notice) else 'Alert'} · "
                    f"rule `{_code(notice.rule)}` · {escape(notice.connection)} "
                    f"({escape(notice.crm)}) · alert {notice.alert_id} · {_date(notice)}"
                )
            ],
        }
    )
    return {"text": _fallback(notice), "blocks": blocks}


def _digest_entry(notice: AlertNotice) -> Block:
    account = _link(words.link(notice), words.account_label(notice))
    text = (
        f"{words.marker(notice)} *{escape(words.one_line(words.headline(notice)))}*\n"
        f"{account} · {escape(words.compact_line(notice))}"
    )
    if notice.drivers:
        label = "Now" if words.is_recovered(notice) else "Why"
        text += f"\n_{label}:_ {escape(words.one_line(notice.drivers[0]))}"
        if len(notice.drivers) > 1:
            text += f" (+{len(notice.drivers) - 1} more)"
    return {"type": "section", "text": _mrkdwn(text)}


def _digest(notices: Sequence[AlertNotice]) -> dict[str, Any]:
    title = words.digest_title(notices)
    # A header and a closing context line frame the list; past the limit, one more section
    # says how many were left out.
    room = MAX_BLOCKS - 2
    shown = list(notices) if len(notices) <= room else list(notices[: room - 1])
    blocks: list[Block] = [{"type": "header", "text": _plain(title, HEADER_LIMIT)}]
    blocks.extend(_digest_entry(notice) for notice in shown)
    left_out = notices[len(shown) :]
    if left_out:
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    f"\u2026 and {len(left_out)} more "
                    f"({words.digest_counts(left_out)}): "
                    "see the alert list in crm-health."
                ),
            }
        )
    latest = max(notices, key=lambda notice: notice.at)
    blocks.append(
        {
            "type": "context",
            "elements": [_mrkdwn(f"crm-health digest of {len(notices)} · latest {_date(latest)}")],
        }
    )
    names = [words.account_label(notice) for notice in notices[:FALLBACK_NAMES]]
    more = len(notices) - len(names)
    fallback = f"{title}: {', '.join(names)}" + (f" and {more} more" if more else "")
    return {"text": words.clip(escape(words.one_line(fallback)), TEXT_LIMIT), "blocks": blocks}


def slack_message(notices: Sequence[AlertNotice]) -> dict[str, Any]:
    """The incoming-webhook body: one notice in full, several as a digest."""
    if not notices:
        raise ValueError("a Slack message needs at least one notice")
    notices = [words.readable(notice) for notice in notices]
    if len(notices) == 1:
        return _single(notices[0])
    return _digest(notices)


class SlackChannel(HTTPChannel):
    """Posts to a Slack incoming webhook; the URL is the credential and is never logged."""

    kind = "slack"

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        if notices:
            await self._post(slack_message(notices))


KIND: Final = ChannelKind(
    type="slack", fields=frozenset({"url"}), sends=sends_http, build=posts_to_url(SlackChannel)
)
