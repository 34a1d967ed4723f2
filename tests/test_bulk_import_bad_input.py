"""The bad-input corpus through Event Grid: every file and row is stored or refused, with why."""

from __future__ import annotations

import http.server
import threading
import typing
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from devtools import events, los_generator
from tests.conftest import UPLOADS, deliver
from tests.test_bulk_import import rejects, runs, stored

HEADER = los_generator.header("names")


def csv(*rows: list[str] | str) -> bytes:
    lines = [",".join(HEADER)]
    lines += [r if isinstance(r, str) else ",".join(r) for r in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


def good_rows(count: int, start_eid: int = 500_000) -> list[list[str]]:
    return list(los_generator.rows(count, seed=9, shape="names", start_eid=start_eid, bad_rows=0))


def with_value(row: list[str], column: str, value: str) -> list[str]:
    row = list(row)
    row[HEADER.index(column)] = value
    return row


def import_file(uploads, db, data: bytes) -> sa.Row:
    """Upload ``data``, deliver its BlobCreated event, return the blob's run."""
    url, etag = uploads.put(data)
    deliver(events.event_grid_schema(url, etag, len(data)))
    [run] = [r for r in runs(db) if r.blobUrl == url]
    return run


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "file rejected: the file is empty"),
        (
            b"patient,admitted,ward\r\nA,1,2\r\n",
            "file rejected: the header is not the length-of-stay schema",
        ),
        (
            "\r\n".join([",".join(HEADER), ",".join(good_rows(1)[0])]).encode("utf-16"),
            "file rejected: the file is UTF-16 encoded; export it as CSV UTF-8",
        ),
        (bytes(range(256)) * 64, "file rejected: the file is not"),
        (
            csv().replace(b",facid", b""),
            "file rejected: the header is not the length-of-stay schema: missing column(s) facid",
        ),
    ],
    ids=["empty", "wrong-header", "utf16", "binary-garbage", "missing-column"],
)
def test_files_refused_whole_end_as_failed_runs(app_env, uploads, db, data, reason):
    run = import_file(uploads, db, data)
    assert run.status == "failed"
    assert run.error.startswith(reason)
    assert (run.rowsRead, run.rowsStored, run.rowsRejected) == (0, 0, 0)
    assert stored(db) == {}


def test_header_only_is_an_empty_successful_run(app_env, uploads, db):
    run = import_file(uploads, db, csv())
    assert (run.status, run.rowsRead) == ("succeeded", 0)


def test_bad_rows_are_rejected_with_line_numbers_and_good_rows_are_stored(app_env, uploads, db):
    base = good_rows(8)
    data = csv(
        base[0],
        with_value(base[1], "vdate", "13/45/2012"),
        with_value(base[2], "pulse", "9000"),
        with_value(base[3], "sodium", "salty"),
        with_value(base[4], "LastName" if "LastName" in HEADER else "Last", "Z" * 1_048_576),
        base[5][:-3],
        base[6],
        with_value(base[7], "discharged", "1/1/2001"),
    )
    run = import_file(uploads, db, data)
    assert (run.status, run.rowsRead, run.rowsStored, run.rowsRejected) == ("succeeded", 8, 2, 6)
    assert sorted(stored(db)) == [int(base[0][3]), int(base[6][3])]
    got = [(r.lineNumber, r.eid, r.reason) for r in rejects(db)]
    eid = [row[3] for row in base]
    assert got == [
        (3, eid[1], "vdate is not a date (M/D/YYYY, MM/DD/YY or YYYY-MM-DD)"),
        (4, eid[2], "pulse is outside the plausible range 10-350 beats/min"),
        (5, eid[3], "sodium is not a number"),
        (6, eid[4], "LastName is 1,048,576 characters long; at most 50"),
        (7, eid[5], f"has {len(HEADER) - 3} fields; the header has {len(HEADER)}"),
        (9, eid[7], "discharged is before vdate"),
    ]


def test_duplicate_eids_in_a_file_and_across_files(app_env, uploads, db):
    rows = good_rows(3)
    first = import_file(uploads, db, csv(rows[0], rows[1], rows[0], rows[2]))
    assert (first.rowsStored, first.rowsRejected) == (3, 1)
    second = import_file(uploads, db, csv(rows[1], good_rows(1, start_eid=600_000)[0]))
    assert (second.rowsStored, second.rowsRejected) == (1, 1)
    assert [(r.runId, r.lineNumber, r.reason) for r in rejects(db)] == [
        (first.id, 4, f"eid {rows[0][3]} is a duplicate of line 2"),
        (second.id, 2, f"eid {rows[1][3]} is already stored; a bulk file never overwrites a stay"),
    ]


def test_the_first_line_of_a_duplicate_eid_wins_whichever_path_read_it(app_env, uploads, db):
    """Line 3 is read row by row (a blank to trim), line 6 column-wise: line 6 is refused."""
    rows = good_rows(5)
    first = with_value(rows[1], "First", " " + rows[1][HEADER.index("First")])
    run = import_file(uploads, db, csv(rows[0], first, rows[2], rows[3], rows[1], rows[4]))
    assert (run.rowsStored, run.rowsRejected) == (5, 1)
    assert [(r.lineNumber, r.reason) for r in rejects(db)] == [
        (6, f"eid {rows[1][3]} is a duplicate of line 3")
    ]
    assert stored(db)[int(rows[1][3])].FirstName == rows[1][HEADER.index("First")]


def test_columns_in_another_order_and_case_are_read_by_name(app_env, uploads, db):
    rows = good_rows(4)
    order = list(reversed(range(len(HEADER))))
    header = ",".join(HEADER[i].upper() for i in order)
    data = (header + "\n" + "".join(",".join(r[i] for i in order) + "\n" for r in rows)).encode()
    run = import_file(uploads, db, data)
    assert (run.rowsStored, run.rowsRejected) == (4, 0)
    one = stored(db)[int(rows[0][3])]
    assert one.vdate is not None and one.lengthofstay == int(rows[0][HEADER.index("lengthofstay")])
    assert one.sodium == float(rows[0][HEADER.index("sodium")])


def test_duplicates_across_batches_of_one_file(app_env, uploads, db, monkeypatch):
    rows = good_rows(1200)
    run = import_file(uploads, db, csv(*rows, rows[10], rows[600]))  # batch size is 500
    assert (run.rowsRead, run.rowsStored, run.rowsRejected) == (1202, 1200, 2)


def test_invalid_utf8_in_one_row_rejects_that_row(app_env, uploads, db):
    rows = good_rows(3)
    data = csv(rows[0], rows[1], rows[2]).replace(rows[1][2].encode(), b"\xff\xfeLAST")
    run = import_file(uploads, db, data)
    assert (run.rowsStored, run.rowsRejected) == (2, 1)
    assert rejects(db)[0].reason == "line 3 is not valid UTF-8 text"


# --- forged events ---------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: typing.ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"eid\r\n1\r\n")

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bait_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.hits = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_forged_urls_are_refused_not_fetched(app_env, uploads, db, bait_server, caplog):
    real_url, etag = uploads.put(csv(*good_rows(2)))
    account = real_url.rsplit(f"/{UPLOADS}/", 1)[0]
    forged = [
        f"{bait_server}/devstoreaccount1/{UPLOADS}/x.csv",  # another host
        real_url.replace(f"/{UPLOADS}/", "/other-container/"),  # another container
        real_url.replace("/devstoreaccount1/", "/otheraccount/"),  # another account
        f"{account}/{UPLOADS}/../other-container/x.csv",  # climbing out
        f"{account}/{UPLOADS}/%2e%2e/other-container/x.csv",
        real_url + "?sv=2024&sig=forged",
        real_url.replace("http://", f"http://user@{bait_server[7:]}@"),
        "file:///etc/passwd",
        "not a url at all",
    ]
    for url in forged:
        deliver(events.event_grid_schema(url, etag))
    assert _Recorder.hits == []
    assert runs(db) == [] and stored(db) == {}
    assert caplog.text.count("refused") >= len(forged)


def test_an_event_without_a_url_is_logged_and_ignored(app_env, uploads, db, caplog):
    body = events.event_grid_schema("x", None)
    del body["data"]["url"]
    deliver(body)
    assert "has no blob url" in caplog.text
    assert runs(db) == []
