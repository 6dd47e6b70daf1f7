"""E-mail over SMTP: one message with a plain-text and an HTML part (multipart/alternative).

Sent with the standard library (smtplib in a worker thread). Failures map to ChannelError:
transport errors (refused, timed out, dropped, TLS) and 4xx SMTP replies are retryable,
5xx replies (a refused recipient, failed authentication) are not.
"""

from __future__ import annotations

import asyncio
import html
import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Final, Literal

import structlog

from webhooks.alerts.channels import text as words
from webhooks.alerts.channels.kinds import (
    BuildContext,
    ChannelEntry,
    ChannelKind,
    ChannelSpec,
    Problem,
    Transport,
)
from webhooks.alerts.notice import AlertNotice, ChannelError, Digest

__all__ = [
    "KIND",
    "EmailChannel",
    "SMTPOptions",
    "email_message",
    "render_html",
    "render_text",
    "valid_address",
]

log = structlog.get_logger(__name__)

SMTPSecurity = Literal["starttls", "ssl", "none"]
DEFAULT_PORTS: Final = {"starttls": 587, "ssl": 465, "none": 25}
SUBJECT_PREFIX: Final = "[crm-health]"
# How much of the server's reply an error quotes.
REPLY_LIMIT: Final = 200
_ADDRESS: Final = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


@dataclass(frozen=True, kw_only=True)
class SMTPOptions:
    """How to reach the SMTP server; `password` is used for login only and never shown."""

    host: str
    from_address: str
    port: int | None = None  # None: the usual port of `security`
    security: SMTPSecurity = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.security]


# --- rendering ---------------------------------------------------------------------------------


def _subject(notices: Sequence[AlertNotice]) -> str:
    if len(notices) == 1:
        notice = notices[0]
        prefix = "Recovered: " if words.is_recovered(notice) else ""
        headline = words.headline(notice)
        if prefix and headline.lower().endswith("recovered"):
            prefix = ""
        return words.clip(words.one_line(f"{SUBJECT_PREFIX} {prefix}{headline}"), 200)
    return f"{SUBJECT_PREFIX} {words.digest_title(notices)}"


def _text_single(notice: AlertNotice) -> list[str]:
    url = words.link(notice)
    account = words.account_label(notice)
    lines = [
        f"{words.marker(notice)} {words.headline(notice)}",
        "",
        words.explanation(notice),
        "",
        f"Account:   {account}" + (f" <{url}>" if url else ""),
        f"Score:     {words.score_text(notice)}",
        f"Trend 30d: {words.trend_text(notice.trend_30d)}",
        f"Owner:     {words.owner_text(notice)}",
    ]
    if notice.drivers:
        lines += ["", "Drivers now:" if words.is_recovered(notice) else "Why:"]
        lines += [f"  - {words.one_line(driver)}" for driver in notice.drivers]
    if url:
        lines += ["", f"Open in CRM: {url}"]
    lines += ["", "-- ", words.context_line(notice)]
    return lines


def _text_entry(notice: AlertNotice) -> list[str]:
    url = words.link(notice)
    lines = [
        f"{words.marker(notice)} {words.one_line(words.headline(notice))}",
        f"   {words.account_label(notice)} · {words.compact_line(notice)}",
    ]
    lines += [f"   - {words.one_line(driver)}" for driver in notice.drivers]
    if url:
        lines.append(f"   {url}")
    return lines


def render_text(notices: Sequence[AlertNotice]) -> str:
    """The plain-text part."""
    notices = [words.readable(notice) for notice in notices]
    if len(notices) == 1:
        return "\n".join(_text_single(notices[0])) + "\n"
    lines = [words.digest_title(notices), ""]
    for notice in notices:
        lines += [*_text_entry(notice), ""]
    latest = max(notices, key=lambda notice: notice.at)
    lines += ["-- ", f"crm-health digest of {len(notices)} · latest {words.when_text(latest.at)}"]
    return "\n".join(lines) + "\n"


_COLORS: Final = {"recovered": "#2e7d32", "at_risk": "#c62828", "other": "#ef6c00"}
_CELL: Final = 'style="padding:2px 12px 2px 0;vertical-align:top"'


def _color(notice: AlertNotice) -> str:
    if words.is_recovered(notice):
        return _COLORS["recovered"]
    return _COLORS["at_risk"] if notice.band == "at_risk" else _COLORS["other"]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _a(url: str | None, label: str) -> str:
    if url is None:
        return _e(label)
    return f'<a href="{_e(url)}">{_e(label)}</a>'


def _html_single(notice: AlertNotice) -> str:
    url = words.link(notice)
    facts = [
        ("Account", _a(url, words.account_label(notice))),
        ("Score", _e(words.score_text(notice))),
        ("Trend 30d", _e(words.trend_text(notice.trend_30d))),
        ("Owner", _e(words.owner_text(notice))),
    ]
    rows = "".join(
        f'<tr><th align="left" {_CELL}>{name}</th><td {_CELL}>{value}</td></tr>'
        for name, value in facts
    )
    parts = [
        f'<h2 style="color:{_color(notice)};margin:0 0 8px">'
        f"{_e(words.marker(notice))} {_e(words.headline(notice))}</h2>",
        f'<p style="margin:0 0 12px">{_e(words.explanation(notice))}</p>',
        f"<table>{rows}</table>",
    ]
    if notice.drivers:
        title = "Drivers now" if words.is_recovered(notice) else "Why"
        items = "".join(f"<li>{_e(driver)}</li>" for driver in notice.drivers)
        parts.append(f'<h3 style="margin:16px 0 4px">{title}</h3><ul>{items}</ul>')
    if url:
        parts.append(
            f'<p><a href="{_e(url)}" style="display:inline-block;padding:6px 12px;'
            'background:#1565c0;color:#ffffff;text-decoration:none;border-radius:4px">'
            "Open in CRM</a></p>"
        )
    parts.append(f'<p style="color:#757575;font-size:12px">{_e(words.context_line(notice))}</p>')
    return "".join(parts)


def _html_digest(notices: Sequence[AlertNotice]) -> str:
    entries = []
    for notice in notices:
        url = words.link(notice)
        why = ""
        if notice.drivers:
            items = "".join(f"<li>{_e(driver)}</li>" for driver in notice.drivers)
            why = f'<ul style="margin:4px 0">{items}</ul>'
        entries.append(
            f'<li style="margin-bottom:12px"><strong style="color:{_color(notice)}">'
            f"{_e(words.marker(notice))} {_e(words.headline(notice))}</strong><br>"
            f"{_a(url, words.account_label(notice))} · {_e(words.compact_line(notice))}"
            f"{why}</li>"
        )
    latest = max(notices, key=lambda notice: notice.at)
    return (
        f'<h2 style="margin:0 0 8px">{_e(words.digest_title(notices))}</h2>'
        f'<ul style="padding-left:16px">{"".join(entries)}</ul>'
        f'<p style="color:#757575;font-size:12px">crm-health digest of {len(notices)} · '
        f"latest {_e(words.when_text(latest.at))}</p>"
    )


def render_html(notices: Sequence[AlertNotice]) -> str:
    """The HTML part: every value escaped, links only to http(s) record URLs."""
    notices = [words.readable(notice) for notice in notices]
    content = _html_single(notices[0]) if len(notices) == 1 else _html_digest(notices)
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        '<body style="font-family:Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;'
        f'color:#212121">{content}</body></html>\n'
    )


def email_message(
    notices: Sequence[AlertNotice],
    *,
    from_address: str,
    to: Sequence[str],
    now: datetime | None = None,
) -> EmailMessage:
    """The whole message: headers, then text and HTML alternatives."""
    if not notices:
        raise ValueError("an e-mail needs at least one notice")
    message = EmailMessage()
    # One line (no CR/LF to start a header of its own), no bidi controls, others' URLs defanged.
    message["Subject"] = _subject([words.readable(notice) for notice in notices])
    message["From"] = from_address
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    domain = _domain(from_address)
    message["Message-ID"] = make_msgid(domain=domain) if domain else make_msgid()
    # RFC 3834: tells auto-responders (out-of-office) not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message["X-CRM-Health-Alerts"] = ", ".join(
        f"{notice.alert_id}-{notice.kind}" for notice in notices
    )
    # Quoted-printable keeps both parts readable in the raw message and 7-bit safe.
    message.set_content(render_text(notices), cte="quoted-printable")
    message.add_alternative(render_html(notices), subtype="html", cte="quoted-printable")
    return message


def _domain(address: str) -> str | None:
    _, addr = parseaddr(address)
    try:
        return Address(addr_spec=addr).domain or None
    except (ValueError, IndexError):
        return None


# --- sending -----------------------------------------------------------------------------------


def _reply(code: int, message: bytes | str, secrets: Sequence[str]) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[hidden]")
    return words.clip(words.one_line(f"{code} {text}"), REPLY_LIMIT)


class EmailChannel:
    """Sends each message to `to` through the SMTP server of `smtp`."""

    kind = "email"
    # Set from the channels file by build_channels; None: no limit.
    daily_limit: int | None = None

    def __init__(
        self, *, name: str, to: Sequence[str], smtp: SMTPOptions, digest: Digest = "none"
    ) -> None:
        if not to:
            raise ValueError("an e-mail channel needs at least one address")
        self.name = name
        self.digest: Digest = digest
        self.to = tuple(to)
        self.smtp = smtp

    def __repr__(self) -> str:
        return f"EmailChannel(name={self.name!r}, to={self.to!r}, host={self.smtp.host!r})"

    async def send(self, notices: Sequence[AlertNotice]) -> None:
        if not notices:
            return
        message = email_message(notices, from_address=self.smtp.from_address, to=self.to)
        refused = await asyncio.to_thread(self._deliver, message)
        if refused:
            # The others got it: failing now would send it to them again on the retry.
            log.warning(
                "alert_email_recipients_refused",
                channel=self.name,
                refused=sorted(refused),
                alerts=[notice.alert_id for notice in notices],
            )
        log.debug("alert_email_sent", channel=self.name, host=self.smtp.host, to=len(self.to))

    async def aclose(self) -> None:
        # A connection is opened per message; nothing stays open.
        return None

    def _where(self) -> str:
        return f"email channel {self.name!r}: SMTP {self.smtp.host}:{self.smtp.effective_port}"

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Blocking: connect, secure, log in, send. Returns the recipients that were refused
        while others were accepted."""
        smtp = self.smtp
        secrets = [smtp.password] if smtp.password else []
        where = self._where()
        try:
            client: smtplib.SMTP
            if smtp.security == "ssl":
                client = smtplib.SMTP_SSL(
                    smtp.host,
                    smtp.effective_port,
                    timeout=smtp.timeout_seconds,
                    context=ssl.create_default_context(),
                )
            else:
                client = smtplib.SMTP(smtp.host, smtp.effective_port, timeout=smtp.timeout_seconds)
            try:
                if smtp.security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if smtp.username:
                    client.login(smtp.username, smtp.password or "")
                return client.send_message(message)
            finally:
                _quit(client)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            retryable = bool(codes) and all(400 <= code < 500 for code in codes)
            replies = "; ".join(
                _reply(code, reply, secrets) for code, reply in exc.recipients.values()
            )
            raise ChannelError(
                f"{where} refused every recipient: {replies}", retryable=retryable
            ) from None
        except smtplib.SMTPResponseException as exc:
            # Connect, HELO, AUTH, MAIL FROM, DATA: the reply code says whether to try again.
            raise ChannelError(
                f"{where} answered {_reply(exc.smtp_code, exc.smtp_error, secrets)}",
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib reports a timeout waiting for an answer this way too.
            raise ChannelError(
                f"{where} closed the connection ({words.one_line(str(exc))[:120]})",
                retryable=True,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            # e.g. no STARTTLS or AUTH on this server: a configuration problem.
            raise ChannelError(
                f"{where} does not support what is configured ({words.one_line(str(exc))})",
                retryable=False,
            ) from None
        except smtplib.SMTPException as exc:
            raise ChannelError(f"{where} failed ({type(exc).__name__})", retryable=False) from None
        except (OSError, TimeoutError) as exc:
            # Refused, unreachable, timed out, TLS handshake: worth another try later.
            raise ChannelError(
                f"{where} unreachable ({type(exc).__name__}: {words.one_line(str(exc))[:120]})",
                retryable=True,
            ) from None


def _quit(client: smtplib.SMTP) -> None:
    """Say goodbye; once the message is sent, a failing QUIT must not count as a failure."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def valid_address(value: str) -> bool:
    """A single e-mail address, bare or with a display name; no header line breaks."""
    if "\r" in value or "\n" in value:
        return False
    _, address = parseaddr(value)
    return bool(_ADDRESS.match(address))


def _check(entry: ChannelEntry) -> list[Problem]:
    if not entry.to:
        return [("to", "an email channel needs at least one address")]
    return [
        (f"to.{position}", "not an e-mail address")
        for position, address in enumerate(entry.to)
        if not valid_address(address)
    ]


def _sends(spec: ChannelSpec) -> Transport:
    return "smtp"


def _build(spec: ChannelSpec, context: BuildContext) -> EmailChannel:
    assert context.smtp is not None  # build_channels raised otherwise
    return EmailChannel(name=spec.name, to=spec.to, smtp=context.smtp, digest=spec.digest)


KIND: Final = ChannelKind(
    type="email", fields=frozenset({"to"}), check=_check, sends=_sends, build=_build
)
