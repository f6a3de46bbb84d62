"""The Dataverse simulator's ``$batch`` multipart parser and response writer."""

from __future__ import annotations

import contextlib

import pytest

from sandbox.dynamics.batch import BatchPart, ChangeSet, InnerResponse, parse_batch, run_batch
from sandbox.dynamics.errors import DataverseError

CT = 'multipart/mixed; boundary="batch_1"'


def part(method: str, url: str, body: str = "", cid: str = "", eol: str = "\r\n") -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    lines += [f"Content-ID: {cid}"] if cid else []
    lines += ["", f"{method} {url} HTTP/1.1", "Content-Type: application/json", "", body]
    return eol.join(lines)


def batch(parts: list[str], boundary: str = "batch_1", eol: str = "\r\n") -> bytes:
    text = "".join(f"--{boundary}{eol}{p}{eol}" for p in parts) + f"--{boundary}--{eol}"
    return text.encode()


def changeset(parts: list[str], eol: str = "\r\n") -> str:
    head = f"Content-Type: multipart/mixed; boundary=changeset_1{eol}{eol}"
    return head + batch(parts, "changeset_1", eol).decode()


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_parts_and_change_sets_parse_with_crlf_or_lf(eol):
    body = batch(
        [
            part("PATCH", "/api/data/v9.2/accounts(x)", '{"name": "A"}', eol=eol),
            changeset([part("POST", "accounts", "{}", cid="1", eol=eol)], eol=eol),
        ],
        eol=eol,
    )
    first, second = parse_batch(CT, body)
    assert isinstance(first, BatchPart)
    assert isinstance(second, ChangeSet)
    assert (first.method, first.url, first.body) == (
        "PATCH", "/api/data/v9.2/accounts(x)", b'{"name": "A"}',
    )  # fmt: skip
    assert first.headers["content-type"] == "application/json"
    assert second.parts[0].content_id == "1"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", batch([part("GET", "WhoAmI")])),
        ("multipart/mixed", batch([part("GET", "WhoAmI")])),
        (CT, b"--batch_1\r\n" + part("GET", "WhoAmI").encode()),  # no closing delimiter
        (CT, batch([changeset([part("GET", "WhoAmI")])])),
        (CT, batch([part("GET", "WhoAmI")] * 1001)),
        (CT, batch(["Content-Type: text/plain\r\n\r\nGET WhoAmI HTTP/1.1"])),
        (CT, batch([part("GET", "WhoAmI").replace(" HTTP/1.1", "")])),
    ],
)
def test_malformed_batches_are_refused(content_type, body):
    with pytest.raises(DataverseError) as caught:
        parse_batch(content_type, body)
    assert caught.value.status == 400


def answer(status: int) -> InnerResponse:
    return InnerResponse(status, [("OData-EntityId", "https://h/api/data/v9.2/accounts(1)")], b"")


def run(items, statuses, *, continue_on_error=False):
    replies = iter(statuses)
    rolled_back = []

    @contextlib.contextmanager
    def atomic():
        try:
            yield
        except BaseException:
            rolled_back.append(True)
            raise

    result = run_batch(
        items, lambda p: answer(next(replies)), atomic, continue_on_error=continue_on_error
    )
    return result, rolled_back


def test_a_failure_stops_the_batch_and_is_the_whole_answer():
    items = [BatchPart("PATCH", "a", {}, b""), BatchPart("PATCH", "b", {}, b"")]
    (status, content_type, body), _ = run(items, [400, 204])
    assert status == 400
    assert body.decode().count("HTTP/1.1 ") == 1
    assert content_type.startswith("multipart/mixed; boundary=batchresponse_")


def test_a_change_set_failure_rolls_back_and_answers_one_plain_part():
    items = [
        ChangeSet([BatchPart("POST", "a", {}, b"", "1"), BatchPart("POST", "b", {}, b"", "2")])
    ]
    (status, _, body), rolled_back = run(items, [204, 400], continue_on_error=True)
    assert (status, rolled_back) == (200, [True])
    assert "changesetresponse_" not in body.decode()
    assert "HTTP/1.1 400 Bad Request" in body.decode()


def test_a_change_set_answers_a_changesetresponse_with_content_ids():
    items = [ChangeSet([BatchPart("POST", "a", {}, b"", "1")])]
    (status, content_type, body), _ = run(items, [204])
    boundary = content_type.split("boundary=")[1]
    text = body.decode()
    assert status == 200
    assert text.startswith(f"--{boundary}\r\n")
    assert text.endswith(f"--{boundary}--\r\n")
    assert "Content-Type: multipart/mixed; boundary=changesetresponse_" in text
    assert "Content-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\n" in text
