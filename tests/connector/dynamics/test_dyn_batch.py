"""The Dataverse `$batch` body builder and response parser, and the per-part outcome table.

Responses are the ones "Execute batch operations using the Web API" prints (Power Apps docs):
a batch without change sets, one with a change set and a GET after it, and the
`Prefer: odata.continue-on-error` example whose first request fails validation. `[Organization
Uri]` is replaced by a real-looking URL; line endings are CRLF as on the wire unless a test says.
"""

from __future__ import annotations

import json
import re

import pytest

from connector.dynamics.batch import (
    BATCH_REQUEST_LIMIT,
    BatchOperation,
    PartOutcome,
    build_batch,
    parse_batch_response,
    part_outcome,
)
from connector.errors import PayloadError

ORG = "https://contoso.crm.dynamics.com"


def wire(text: str) -> bytes:
    """A documented message as sent: the org URL filled in, CRLF line endings."""
    return text.replace("[Organization Uri]", ORG).replace("\n", "\r\n").encode()


WITHOUT_CHANGE_SETS = """--batchresponse_01346794-f2e2-4d45-8cc2-f97e09fe8916
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [Organization Uri]/api/data/v9.2/tasks(d31ba648-c592-ed11-aad1-000d3a993550)
OData-EntityId: [Organization Uri]/api/data/v9.2/tasks(d31ba648-c592-ed11-aad1-000d3a993550)


--batchresponse_01346794-f2e2-4d45-8cc2-f97e09fe8916
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [Organization Uri]/api/data/v9.2/tasks(d41ba648-c592-ed11-aad1-000d3a993550)
OData-EntityId: [Organization Uri]/api/data/v9.2/tasks(d41ba648-c592-ed11-aad1-000d3a993550)


--batchresponse_01346794-f2e2-4d45-8cc2-f97e09fe8916
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 200 OK
Content-Type: application/json; odata.metadata=minimal; odata.streaming=true
OData-Version: 4.0

{
  "@odata.context": "[Organization Uri]/api/data/v9.2/$metadata#tasks(subject)",
  "value": [
    {
      "@odata.etag": "W/\\"77180907\\"",
      "subject": "Task 1 in batch",
      "activityid": "d31ba648-c592-ed11-aad1-000d3a993550"
    }
  ]
}
--batchresponse_01346794-f2e2-4d45-8cc2-f97e09fe8916--
"""

WITH_CHANGE_SET = """--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f
Content-Type: multipart/mixed; boundary=changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15

--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [Organization Uri]/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)
OData-EntityId: [Organization Uri]/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)


--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [Organization Uri]/api/data/v9.2/tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)
OData-EntityId: [Organization Uri]/api/data/v9.2/tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)


--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [Organization Uri]/api/data/v9.2/tasks(e93ffc82-e292-ed11-aad1-000d3a9933c9)
OData-EntityId: [Organization Uri]/api/data/v9.2/tasks(e93ffc82-e292-ed11-aad1-000d3a9933c9)


--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15--
--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 200 OK
Content-Type: application/json; odata.metadata=minimal; odata.streaming=true
OData-Version: 4.0

{"value": []}
--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f--
"""

CONTINUE_ON_ERROR = """--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 400 Bad Request
REQ_ID: de4c5227-4a28-4ebd-8ced-3392ece1697b
Content-Type: application/json; odata.metadata=minimal
OData-Version: 4.0

{validation_error}
--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [Organization Uri]/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)
OData-EntityId: [Organization Uri]/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)


--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139
Content-Type: application/http
Content-Transfer-Encoding: binary

HTTP/1.1 204 No Content
OData-Version: 4.0
Location: [Organization Uri]/api/data/v9.2/tasks(b181a991-3c94-ed11-aad1-000d3a9933c9)
OData-EntityId: [Organization Uri]/api/data/v9.2/tasks(b181a991-3c94-ed11-aad1-000d3a9933c9)


--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139--

""".replace(
    "{validation_error}",
    '{"error":{"code":"0x80044331","message":"A validation error occurred.  The length of the '
    "'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.\"}}",
)


# --- building ----------------------------------------------------------------------------------


def test_each_operation_goes_in_a_change_set_of_its_own_numbered_by_content_id() -> None:
    operations = [
        BatchOperation(
            method="PATCH",
            url=f"{ORG}/api/data/v9.2/accounts(00000000-0000-0000-0000-00000000000{n})",
            body={"cr123_healthscore": 80 + n},
            headers={"If-Match": "*"},
        )
        for n in range(1, 4)
    ]
    content_type, body = build_batch(operations, batch_id="abc")
    assert content_type == "multipart/mixed; boundary=batch_abc"
    text = body.decode()
    assert "\n" not in text.replace("\r\n", "")  # every line ends in CRLF
    assert text.startswith("--batch_abc\r\n")
    assert text.endswith("--batch_abc--\r\n")
    assert text.count("--batch_abc\r\n") == 3
    assert text.count("Content-Type: multipart/mixed; boundary=changeset_abc_") == 3
    for n in range(1, 4):
        assert text.count(f"--changeset_abc_{n:04d}\r\n") == 1
        assert text.count(f"--changeset_abc_{n:04d}--\r\n") == 1
        assert f"Content-ID: {n}\r\n" in text
    assert text.count("PATCH https://contoso.crm.dynamics.com/api/data/v9.2/accounts(") == 3
    assert text.count("If-Match: *\r\n") == 3
    first = text.split("--changeset_abc_0001\r\n")[1].split("--changeset_abc_0001--")[0]
    assert first == (
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 1\r\n"
        "\r\n"
        f"PATCH {ORG}/api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001) HTTP/1.1\r\n"
        "Content-Type: application/json\r\n"
        "If-Match: *\r\n"
        "\r\n"
        '{"cr123_healthscore":81}\r\n'
    )


def test_no_boundary_starts_another() -> None:
    operation = BatchOperation(method="DELETE", url=f"{ORG}/api/data/v9.2/tasks(x)")
    _, body = build_batch([operation] * 12, batch_id="abc")
    boundaries = re.findall(r"boundary=(\S+)", body.decode())
    assert len(set(boundaries)) == 12
    for one in [*boundaries, "batch_abc"]:
        assert not any(other != one and other.startswith(one) for other in boundaries)


def test_every_batch_gets_a_new_boundary() -> None:
    operation = BatchOperation(method="DELETE", url=f"{ORG}/api/data/v9.2/tasks(x)")
    first, _ = build_batch([operation])
    second, _ = build_batch([operation])
    assert first != second
    assert re.fullmatch(r"multipart/mixed; boundary=batch_[0-9a-f]{32}", first)


def test_a_batch_over_1000_requests_is_refused() -> None:
    operation = BatchOperation(method="DELETE", url=f"{ORG}/api/data/v9.2/tasks(x)")
    build_batch([operation] * BATCH_REQUEST_LIMIT)
    with pytest.raises(ValueError, match="1000"):
        build_batch([operation] * (BATCH_REQUEST_LIMIT + 1))


def test_json_bodies_keep_non_ascii_text() -> None:
    operation = BatchOperation(
        method="PATCH", url=f"{ORG}/api/data/v9.2/accounts(x)", body={"d": "Nutzung rückläufig"}
    )
    _, body = build_batch([operation])
    assert '{"d":"Nutzung rückläufig"}' in body.decode("utf-8")


# --- parsing the documented responses ----------------------------------------------------------


def test_the_documented_batch_without_change_sets_parses_in_order() -> None:
    parts = parse_batch_response(
        wire(WITHOUT_CHANGE_SETS),
        "multipart/mixed; boundary=batchresponse_01346794-f2e2-4d45-8cc2-f97e09fe8916",
    )
    assert [(part.index, part.status, part.content_id) for part in parts] == [
        (0, 204, None),
        (1, 204, None),
        (2, 200, None),
    ]
    assert parts[0].reason == "No Content"
    assert parts[0].headers["odata-entityid"] == (
        f"{ORG}/api/data/v9.2/tasks(d31ba648-c592-ed11-aad1-000d3a993550)"
    )
    assert json.loads(parts[2].body)["value"][0]["subject"] == "Task 1 in batch"


def test_the_documented_change_set_response_is_opened_with_its_content_ids() -> None:
    parts = parse_batch_response(
        wire(WITH_CHANGE_SET),
        "multipart/mixed; boundary=batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f",
    )
    assert [(part.index, part.status, part.content_id) for part in parts] == [
        (0, 204, "1"),
        (0, 204, "2"),
        (0, 204, "3"),
        (1, 200, None),
    ]


def test_the_documented_continue_on_error_response_carries_the_error_body() -> None:
    parts = parse_batch_response(
        wire(CONTINUE_ON_ERROR),
        'multipart/mixed; boundary="batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139"',
    )
    assert [part.status for part in parts] == [400, 204, 204]
    code, text = parts[0].error()
    assert code == "0x80044331"
    assert text.startswith("400 0x80044331: A validation error occurred.")
    assert parts[1].error() == (None, "204 No Content")


def test_lf_only_line_endings_parse_too() -> None:
    body = CONTINUE_ON_ERROR.replace("[Organization Uri]", ORG).encode()
    parts = parse_batch_response(
        body, "multipart/mixed; boundary=batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139"
    )
    assert [part.status for part in parts] == [400, 204, 204]


def test_the_boundary_is_read_from_the_body_when_the_header_has_none() -> None:
    parts = parse_batch_response(wire(CONTINUE_ON_ERROR), "multipart/mixed")
    assert [part.status for part in parts] == [400, 204, 204]


def test_a_part_cut_off_before_its_boundary_is_left_out() -> None:
    complete = wire(CONTINUE_ON_ERROR)
    body = complete[: complete.index(b"tasks(b181a991")]
    parts = parse_batch_response(body, None)
    # The third part's boundary line is there, its end is not: only two answers are certain.
    assert [part.status for part in parts] == [400, 204]


def test_an_answer_that_is_not_multipart_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not multipart"):
        parse_batch_response(b'{"error": {"code": "0x0"}}', "application/json")


def test_content_id_in_the_inner_response_headers_is_accepted() -> None:
    body = wire(
        "--b\n"
        "Content-Type: application/http\n"
        "\n"
        "HTTP/1.1 404 Not Found\n"
        "Content-ID: 7\n"
        "Content-Type: application/json\n"
        "\n"
        '{"error":{"code":"0x80040217","message":"account With Id = 1 Does Not Exist"}}\n'
        "--b--\n"
    )
    (part,) = parse_batch_response(body, "multipart/mixed; boundary=b")
    assert (part.content_id, part.status) == ("7", 404)
    assert part.error() == ("0x80040217", "404 0x80040217: account With Id = 1 Does Not Exist")


# --- outcomes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (204, None, PartOutcome.WRITTEN),
        (200, None, PartOutcome.WRITTEN),
        (400, "0x80044331", PartOutcome.REJECTED),  # validation
        (403, "0x80040220", PartOutcome.REJECTED),  # privilege
        (404, "0x80040217", PartOutcome.REJECTED),  # row does not exist
        (412, None, PartOutcome.REJECTED),
        (409, None, PartOutcome.REJECTED),  # any other 4xx
        (401, None, PartOutcome.FAILED),
        (408, None, PartOutcome.FAILED),
        (429, "0x80072322", PartOutcome.FAILED),
        (500, "0x80040216", PartOutcome.FAILED),
        (503, None, PartOutcome.FAILED),
        (302, None, PartOutcome.FAILED),
        # Service protection decides whatever the status says; so does "does not exist".
        (400, "0x80072321", PartOutcome.FAILED),
        (400, "-2147015898", PartOutcome.FAILED),
        (500, "0x80040217", PartOutcome.REJECTED),
    ],
)
def test_part_outcomes(status: int, code: str | None, outcome: PartOutcome) -> None:
    assert part_outcome(status, code) is outcome
