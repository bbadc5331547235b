"""``searchstats import`` and ``export``: every kind, idempotent by eventId, malformed lines named
by number, and an export that imports back to the same statistics, in NDJSON and CSV."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.cli import main
from app.domain.periods import Granularity, parse_zone, period_of_days
from app.domain.stats import Breakdown, Metric, Rate, StatsQuery
from app.services import bulk
from app.services.bulk import account_principal
from app.services.runtime import build_runtime
from app.services.stats import compute_stats
from app.settings import Settings

SHOP = "0123456789abcdef0123456789abcdef"
ITEM = "a8e4b4a6-2f6b-4b53-9c5e-1d6f0e1a2b3c"


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
    keyed = [doc for doc in documents(2600) if "eventId" in next(iter(doc.values()))]
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
    assert code == 0
    assert messages[:4] == [
        "searchstats: line 3: rank is required",
        "searchstats: line 5: the line is not valid JSON",
        "searchstats: line 6: unknown event type 'purchase': expected one of view, search, "
        "visit, click, feedback",
        "searchstats: line 7: unknown fields for visit: colour",
    ]
    assert "read 7, stored 3, duplicates 0, rejected 4" in messages[-1]


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

    use(empty_database_url, monkeypatch)
    assert cli(capsys, "migrate")[0] == 0
    prepare(capsys)
    code, _, err = cli(capsys, "import", str(exported))
    assert code == 0, err
    assert f"read {len(docs)}, stored {len(docs)}, duplicates 0, rejected 0" in summary(err)
    assert stats(empty_database_url) == original
    assert original["rates"]["click_through_rate"]  # clicks linked to their searches
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
    assert again.read_text() == exported.read_text()


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
