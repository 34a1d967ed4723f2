"""Checking a block of lines at a time gives exactly what checking row by row gives.

Every test reads the same bytes both ways and compares, line by line, the stored row (values
and their types) or the reject (eid and reason).
"""

from __future__ import annotations

import pytest

from devtools import los_generator
from shared.bulk.csvfile.block_validation import BlockValidator
from shared.bulk.csvfile.csv_rows import CsvRecords, LineBlock, Record
from shared.bulk.csvfile.row_validation import COLUMNS, Invalid, RowValidator

Outcome = dict[int, str]  # line -> repr of the stored row, or "reject: eid: reason"


def _record_outcome(record: Record, validator: RowValidator, out: Outcome) -> None:
    eid = validator.eid_text(record.fields)
    if record.problem is not None:
        out[record.line] = f"reject: {eid}: {record.problem}"
        return
    try:
        out[record.line] = repr(validator.validate(record.fields))
    except Invalid as exc:
        out[record.line] = f"reject: {eid}: {exc}"


def row_by_row(data: bytes) -> Outcome:
    records = CsvRecords([data], COLUMNS)
    validator = RowValidator(records.header)
    out: Outcome = {}
    for record in records:
        _record_outcome(record, validator, out)
    return out


def block_by_block(chunks: list[bytes], max_lines: int = 1000) -> tuple[Outcome, int]:
    """The outcome, and how many rows were vouched for column-wise."""
    records = CsvRecords(chunks, COLUMNS)
    validator = RowValidator(records.header)
    blocks = BlockValidator(validator)
    out: Outcome = {}
    column_wise = 0
    for item in records.blocks(max_lines):
        if isinstance(item, Record):
            _record_outcome(item, validator, out)
            continue
        assert isinstance(item, LineBlock)
        checked = blocks.validate(item)
        column_wise += checked.columnwise
        for line, row in zip(checked.valid.lines, checked.valid.rows(), strict=True):
            out[line] = repr(row)
        for line, eid, reason, _ in checked.rejects:
            out[line] = f"reject: {eid}: {reason}"
    return out, column_wise


def lines_of(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def with_line(data: bytes, position: int, line: bytes) -> bytes:
    lines = lines_of(data)
    lines.insert(position, line)
    return b"".join(lines)


def generated(count: int = 300, **kwargs: object) -> bytes:
    return los_generator.csv_bytes(count, seed=5, **kwargs)


def edit(line: bytes, column: str, value: str, shape: str = "names") -> bytes:
    """``line`` of a generated file with ``column`` set to ``value``."""
    header = los_generator.header(shape)
    fields = line.rstrip(b"\r\n").decode().split(",")
    fields[header.index(column)] = value
    return (",".join(fields) + "\n").encode()


@pytest.mark.parametrize("shape", ["names", "nonames", "production"])
def test_a_clean_file_is_checked_column_wise_with_the_same_result(shape: str) -> None:
    data = generated(shape=shape)
    out, column_wise = block_by_block([data])
    assert out == row_by_row(data)
    assert column_wise == 300


# Each (column, text) below replaces one field of one line; the row-by-row rules decide.
TRICKY_FIELDS = [
    ("pulse", "91.0"),  # a measurement: decimals stored rounded
    ("pulse", "90.5"),
    ("secondarydiagnosisnonicd9", "2.0"),  # a count: digits only
    ("pulse", "91.5"),
    ("pulse", "1e2"),
    ("pulse", "+90"),
    ("eid", "-0"),
    ("eid", "0"),
    ("eid", "2147483648"),
    ("eid", ""),
    ("hematocrit", "nan"),
    ("hematocrit", "NaN"),
    ("hematocrit", "inf"),
    ("hematocrit", "-inf"),
    ("hematocrit", "1_0"),
    ("hematocrit", "١٢"),  # Arabic-Indic digits: float() takes them, the rules do not
    ("hematocrit", "12."),
    ("hematocrit", ".5"),
    ("hematocrit", "1e1"),
    ("hematocrit", "0x10"),
    ("hematocrit", ""),
    ("hematocrit", "250"),
    ("creatinine", "0.0100000000000000001"),
    ("respiration", "-0"),
    ("asthma", "0.0"),
    ("asthma", "1.0"),
    ("asthma", "2"),
    ("asthma", ""),
    ("asthma", "+"),
    ("gender", "m"),
    ("gender", "X"),
    ("gender", ""),
    ("facid", "b"),
    ("facid", "AB"),
    ("rcount", "5+"),
    ("rcount", "6"),
    ("rcount", ""),
    ("vdate", "3/9/12"),
    ("vdate", "2012-03-09"),
    ("vdate", "2012-03-09T10:00:00"),
    ("vdate", "13/1/2012"),
    ("vdate", "1/1/1899"),
    ("vdate", "1/1/2999"),
    ("vdate", ""),
    ("discharged", ""),
    ("discharged", "1/1/2011"),
    ("lengthofstay", ""),
    ("lengthofstay", "999"),
    ("lengthofstay", "3651"),
    ("First", " Ann"),
    ("First", "Ann "),
    ("First", "Ann\t"),
    ("First", "Mary Ann"),
    ("First", "\u00a0Ann"),  # no-break space: trimmed by the row rules
    ("First", "Ann\u3000"),
    ("First", "José"),
    ("First", "Ñ" * 30),  # 30 characters, 60 bytes: within the 50-character limit
    ("First", "A" * 51),
    ("First", "A\x01B"),
    ("First", "A\x7fB"),
    ("Last", ""),
]


@pytest.mark.parametrize(("column", "text"), TRICKY_FIELDS)
def test_a_tricky_field_gets_the_row_rules_verdict(column: str, text: str) -> None:
    lines = lines_of(generated())
    lines[10] = edit(lines[10], column, text)
    data = b"".join(lines)
    out, column_wise = block_by_block([data])
    assert out == row_by_row(data)
    assert column_wise >= 290  # the other lines stay on the fast path


@pytest.mark.parametrize(
    "line",
    [
        b"\n",
        b"   \n",
        b",,,\n",
        b"1,2,3\n",
        b"\xff\xfe not UTF-8,\n",
        b'"quoted, field",x\n',
    ],
)
def test_odd_lines_get_the_row_rules_verdict(line: bytes) -> None:
    data = with_line(generated(), 20, line)
    out, _ = block_by_block([data])
    assert out == row_by_row(data)


def test_a_field_too_many_or_too_few() -> None:
    lines = lines_of(generated())
    lines[5] = lines[5].rstrip(b"\n") + b",extra\n"
    lines[6] = lines[6].rsplit(b",", 1)[0] + b"\n"
    data = b"".join(lines)
    out, _ = block_by_block([data])
    assert out == row_by_row(data)
    assert out[6].startswith("reject") and out[7].startswith("reject")


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_line_endings_a_bom_and_the_stay_rules(ending: bytes) -> None:
    lines = lines_of(generated())
    lines[30] = edit(lines[30], "lengthofstay", "0")  # does not match its dates
    lines[31] = edit(lines[31], "discharged", "")  # still in hospital: no length of stay
    data = b"\xef\xbb\xbf" + b"".join(line.rstrip(b"\r\n") + ending for line in lines)
    out, column_wise = block_by_block([data])
    assert out == row_by_row(data)
    assert column_wise == 299


def test_a_lone_carriage_return_is_read_row_by_row() -> None:
    data = with_line(generated(), 12, b"\r")
    out, _ = block_by_block([data])
    assert out == row_by_row(data)


def test_a_quoted_record_over_several_lines_across_chunks_and_blocks() -> None:
    # 60 lines, the quoted record among them, are enough for every chunk and block size to
    # cut around and inside it; the cost is one pandas parse per block, so with one-line
    # blocks it grows with the lines (300 lines took ~7 s here, and 32 s on a busy runner).
    lines = lines_of(generated(60))
    quoted = edit(lines[40], "First", '"Ann\nMarie"')
    data = b"".join([*lines[:40], quoted, *lines[41:]])
    expected = row_by_row(data)
    for size in (7, 64, 4096):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        for max_lines in (1, 13, 1000):
            out, _ = block_by_block(chunks, max_lines)
            assert out == expected, (size, max_lines)


def test_numbers_parse_to_the_same_double_as_float() -> None:
    texts = [
        "136.7330018",
        "0.1",
        "1.000000000000000111",
        "29.63949930000000001",
        "99.99999999999999",
    ]
    lines = lines_of(generated(len(texts)))
    for i, text in enumerate(texts, start=1):
        lines[i] = (
            edit(lines[i], "sodium", text)
            if float(text) > 80
            else edit(lines[i], "creatinine", text)
        )
    data = b"".join(lines)
    out, column_wise = block_by_block([data])
    assert out == row_by_row(data)
    assert column_wise == len(texts)


def test_taking_part_of_a_block_keeps_line_order() -> None:
    lines = lines_of(generated(50))
    lines[3] = edit(lines[3], "gender", "X")
    lines[7] = edit(lines[7], "gender", "m")
    records = CsvRecords([b"".join(lines)], COLUMNS)
    [block] = list(records.blocks(1000))
    checked = BlockValidator(RowValidator(records.header)).validate(block)
    head, last = checked.take(10)
    assert last == 11  # lines 2-11 are the first ten records
    assert head.valid.lines == [2, 3, 5, 6, 7, 8, 9, 10, 11]  # line 8 (gender m): row by row
    assert [reject.line for reject in head.rejects] == [4]
    assert len(head) == 10 and len(checked) == 40
    assert min(checked.valid.lines) == 12


@pytest.mark.parametrize("shape", ["names", "production"])
def test_a_messy_generated_file_gets_the_same_verdicts(shape: str) -> None:
    data = los_generator.csv_bytes(3000, seed=11, shape=shape, bad_rows=0.05)
    out, column_wise = block_by_block([data[i : i + 50_000] for i in range(0, len(data), 50_000)])
    assert out == row_by_row(data)
    assert column_wise > 2000


def test_a_rule_the_column_wise_path_cannot_check_sends_its_lines_row_by_row(monkeypatch):
    # A new, stricter pulse rule that the column-wise checks are told they cannot vouch for:
    # every line with a pulse goes through the row rules, so the rule is never skipped.
    import dataclasses

    from shared.records import rules

    stricter = dataclasses.replace(
        rules.RULE["pulse"], high=90, columnwise=False, out_of_range="pulse is above 90"
    )
    monkeypatch.setitem(rules.RULE, "pulse", stricter)
    data = generated(300)
    by_block, column_wise = block_by_block([data])
    assert by_block == row_by_row(data)
    assert column_wise == 0
    assert any(outcome.endswith("pulse is above 90") for outcome in by_block.values())
