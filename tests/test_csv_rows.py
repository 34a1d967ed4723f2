"""The CSV reader: encodings, line endings, quoting, header mapping, and what it refuses whole."""

from __future__ import annotations

import pytest

from shared.bulk.csvfile.csv_rows import MAX_LINE_BYTES, CsvRecords, FileRejected
from shared.bulk.csvfile.row_validation import COLUMNS, RowValidator


def read(data: bytes, chunk: int = 7) -> tuple[tuple[str, ...], list]:
    """Feed ``data`` in small chunks, as a blob download would, to exercise line joining."""
    chunks = (data[i : i + chunk] for i in range(0, len(data), chunk))
    records = CsvRecords(chunks, COLUMNS)
    return records.header, list(records)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_encodings_and_line_endings_give_the_same_records(bom, newline):
    data = bom + newline.join([b"eid,First,Last", b"1,Ann,Lee", b'2,"Bo, Jr",Kim', b""])
    header, records = read(data)
    assert header == ("eid", "FirstName", "LastName")
    assert [(r.line, r.fields, r.problem) for r in records] == [
        (2, ["1", "Ann", "Lee"], None),
        (3, ["2", "Bo, Jr", "Kim"], None),
    ]


def test_header_is_case_insensitive_and_order_free():
    header, _ = read(b"VDATE, EID ,FirstName,middle,LAST\n")
    assert header == ("vdate", "eid", "FirstName", "MiddleName", "LastName")


def test_a_quoted_field_may_span_lines_and_line_numbers_stay_physical():
    data = b'eid,First\n1,"two\nlines"\n2,Bo\n'
    _, records = read(data)
    assert [(r.line, r.end_line) for r in records] == [(2, 3), (4, 4)]
    assert records[0].fields == ["1", "two\nlines"]


def test_blank_lines_are_not_records():
    _, records = read(b"eid,First\n\n1,Ann\n\n\n2,Bo\n\n")
    assert [r.line for r in records] == [3, 6]


def test_a_record_with_the_wrong_number_of_fields_is_a_problem_not_a_crash():
    _, records = read(b"eid,First\n1,Ann,extra\n2\n3,Cy\n")
    assert [r.problem for r in records] == [
        "has 3 fields; the header has 2",
        "has 1 fields; the header has 2",
        None,
    ]


def test_invalid_utf8_in_one_row_rejects_that_row_only():
    _, records = read(b"eid,First\n1,Ann\n2,\xff\xfe\xfd\n3,Cy\n")
    assert [(r.line, r.problem) for r in records] == [
        (2, None),
        (3, "line 3 is not valid UTF-8 text"),
        (4, None),
    ]


def test_a_line_over_the_limit_is_rejected_and_reading_goes_on():
    huge = b"2," + b"x" * (MAX_LINE_BYTES + 10)
    _, records = read(b"eid,First\n1,Ann\n" + huge + b"\n3,Cy\n", chunk=1024 * 1024)
    assert [(r.line, r.problem is None) for r in records] == [(2, True), (3, False), (4, True)]
    assert "longer than" in records[1].problem


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        ("eid,vdate\n1,2\n".encode("utf-16"), "UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00", "not UTF-8 text"),
        (b"GIF89a\x01\x00\x01\x00\x00\xff\x00,\n", "not text"),
        (b"\xc3\x28\xa0\xa1garbage\n", "not UTF-8"),
        (b"eid,vdate,eid\n", "more than once: eid"),
        (b"eid,colour,vdate,shoe\n", "position(s) 2, 4 are not known"),
    ],
    ids=["empty", "utf16", "png", "nul-bytes", "not-utf8", "duplicate-column", "unknown-columns"],
)
def test_files_refused_whole(data, reason):
    with pytest.raises(FileRejected) as refused:
        read(data)
    assert reason in refused.value.reason


def test_a_file_without_a_header_is_refused_without_echoing_its_first_row():
    row = b"FirstA,Amiddle,LASTCEVUDKM,101000,9/21/2012,0,F\n"
    with pytest.raises(FileRejected) as refused:
        read(row)
    assert "LASTCEVUDKM" not in refused.value.reason
    assert "FirstA" not in refused.value.reason


def test_missing_required_columns_are_named():
    header, _ = read(b"eid,vdate,gender\n")
    with pytest.raises(FileRejected) as refused:
        RowValidator(header)
    assert "missing column(s) rcount, dialysisrenalendstage" in refused.value.reason
    assert "facid" in refused.value.reason
