"""``searchstats import`` and ``searchstats export``: files in and out, a progress bar, a summary.

The work itself is ``app.services.bulk``'s; here are the files (NDJSON or CSV), the progress bar
(on a terminal only), and the lines a person or a script reads at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import aclosing, closing, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from app.auth.keys import read_secret
from app.collector import settle_garbage_collector
from app.domain.event_documents import CSV_COLUMNS, csv_row
from app.errors import BadParams
from app.import_files import Advance, Documents, cannot_read, csv_documents, ndjson_documents
from app.services import bulk
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from app.storage.migrate import upgrade_to_head
from app.terminal import printable

# The exit status of an import that read the whole file but rejected lines of it (--on-error
# skip): not 0, which says every line was stored or a duplicate, nor 1, an import that stopped.
SOME_LINES_REJECTED = 3
# The exit status of an import or export stopped by Ctrl-C or a plain kill (SIGINT, SIGTERM):
# the shell's for a command that SIGINT ended.
INTERRUPTED = 130


def add_commands(commands: Any) -> None:
    """The two subcommands, on the ``searchstats`` parser's subparsers."""
    importing = commands.add_parser(
        "import",
        help="record the events of an NDJSON or CSV file (idempotent by eventId)",
        epilog=(
            "exit status: 0 when every line was stored or a duplicate; 1 on an error, or at "
            "the first rejected line with --on-error stop; "
            f"{SOME_LINES_REJECTED} when lines were rejected and skipped (--on-error skip); "
            f"{INTERRUPTED} when interrupted (Ctrl-C, kill): the lines read are stored, and "
            "importing the file again stores the rest. "
            "The last line on standard error sums up: read, stored, duplicates, rejected."
        ),
    )
    importing.add_argument("file", metavar="FILE", help="the file, or - for standard input")
    importing.add_argument(
        "--account",
        help="the account whose engines get the events (default: the account named default)",
    )
    importing.add_argument("--format", choices=("ndjson", "csv"), help="default: by extension")
    importing.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="at a malformed line: stop there (default), or report it and go on",
    )
    importing.set_defaults(handler=run_import)

    exporting = commands.add_parser("export", help="write the events of a period as NDJSON or CSV")
    exporting.add_argument("--from", dest="start", required=True, help="ISO date or date-time")
    exporting.add_argument("--to", dest="end", required=True, help="ISO date (included) or time")
    exporting.add_argument(
        "--account",
        help="the account whose events are written (default: the account named default)",
    )
    exporting.add_argument(
        "--format", choices=("ndjson", "csv"), help="default: by the output's extension"
    )
    exporting.add_argument(
        "--output", help="the file to write, or - for standard output (the default)"
    )
    exporting.set_defaults(handler=run_export)


async def _with_runtime(settings: Settings, work: Callable[[Runtime], Any]) -> Any:
    # Import and export check no credential: they read the service's secret key if there is one,
    # and never make one (it would not open the API keys the database may hold).
    runtime = build_runtime(settings, secret=read_secret(settings) or secrets.token_urlsafe(48))
    await upgrade_to_head(runtime.database)
    await runtime.start()
    try:
        return await work(runtime)
    finally:
        await runtime.stop()


# ---- import ----------------------------------------------------------------------------------


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    name = args.file
    fmt = _format(args.format, name)
    source = sys.stdin.buffer if name == "-" else _input(name)

    def rejected(line: int, message: str) -> None:
        print(f"searchstats: line {line}: {printable(message)}", file=sys.stderr)

    async def work(runtime: Runtime) -> bulk.ImportSummary:
        principal = await bulk.account_principal(runtime.database, args.account)
        settle_garbage_collector()  # every line's objects die with its batch
        reader = csv_documents if fmt == "csv" else ndjson_documents
        with _progress("importing", _size(source)) as advance:
            # A line no door would take whole is refused unread, as a body over the limit is.
            documents = reader(source, advance, limit=settings.max_body_bytes)
            with closing(documents):
                return await bulk.import_events(
                    runtime=runtime,
                    principal=principal,
                    documents=stop.documents(documents),
                    on_error=args.on_error,
                    rejected=rejected,
                    summary=summary,
                )

    stop = _StopRequests()
    summary = bulk.ImportSummary()
    # opened first, to name a missing file before the database is opened
    with source, stop.handled():
        try:
            asyncio.run(_with_runtime(settings, work))
        except Exception:
            if summary.read:  # failed part-way (the database down): how far it went, then why
                print(f"searchstats: import: {summary.line()}", file=sys.stderr)
            raise
    if stop.cut:
        print(
            f"searchstats: import: interrupted after line {stop.last_line}, the lines up to it "
            "imported: importing the file again imports the rest (an event with an eventId is "
            "not stored twice)",
            file=sys.stderr,
        )
    print(f"searchstats: import: {summary.line()}", file=sys.stderr)
    if stop.cut:
        return INTERRUPTED
    if summary.stopped_at is not None:
        return 1
    return SOME_LINES_REJECTED if summary.rejected else 0


class _StopRequests:
    """Ctrl-C or a plain kill (SIGINT, SIGTERM) during an import or an export: the first one ends
    the reading, and what was read is committed or written and summed up (instead of a traceback
    that also cancelled the batches being committed); a second one stops at once."""

    def __init__(self) -> None:
        self.asked = False
        self.cut = False  # what was left is left unread
        self.last_line = 0  # the number of the last import line read

    @contextmanager
    def handled(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread may handle signals (as asyncio.run's own handler)
            return
        kept = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        for number in kept:
            signal.signal(number, self._ask)
        try:
            yield
        finally:
            for number, handler in kept.items():
                signal.signal(number, handler)

    def _ask(self, _number: int, _frame: object) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True

    def stops(self) -> bool:
        """Whether to stop here, leaving the rest unread: a stop was asked for."""
        self.cut = self.cut or self.asked
        return self.asked

    def documents(self, documents: Iterable[tuple[int, Any]]) -> Documents:
        """The import's documents, until a stop is asked for."""
        for item in documents:
            if self.stops():
                return
            self.last_line = item[0]
            yield item


def _format(given: str | None, path: str | None) -> str:
    """The format asked, else the file's by its extension: CSV for ``.csv``, else NDJSON (so
    that ``export --output x.csv`` writes what ``import x.csv`` reads)."""
    return given or ("csv" if path and path.lower().endswith(".csv") else "ndjson")


def _input(name: str) -> IO[bytes]:
    try:
        return Path(name).open("rb")
    except OSError as error:
        raise cannot_read(name, error) from None


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _size(source: IO[bytes]) -> int | None:
    try:
        return Path(source.name).stat().st_size if isinstance(source.name, str) else None
    except OSError:
        return None


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Advance]:
    """A progress bar on a terminal's stderr; nothing at all otherwise (pipes, logs, CI)."""
    if not sys.stderr.isatty():
        yield lambda _amount: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        pending = 0
        last = time.monotonic()

        def advance(amount: int) -> None:
            nonlocal pending, last
            pending += amount
            if time.monotonic() - last > 0.1:  # not once per line: a line costs microseconds
                progress.advance(task, pending)
                pending, last = 0, time.monotonic()

        yield advance


# ---- export ----------------------------------------------------------------------------------


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    start = _bound("--from", args.start)
    end = _bound("--to", args.end, end=True)
    if end <= start:
        raise BadParams("--to must be after --from")
    started = time.perf_counter()
    # "-" is standard output, as for import (it was a file named "-").
    output = None if args.output == "-" else args.output

    async def work(runtime: Runtime) -> int:
        principal = await bulk.account_principal(runtime.database, args.account)
        documents = bulk.export_documents(
            runtime=runtime, principal=principal, start=start, end=end
        )
        with _output(output) as out:
            as_csv = _format(args.format, output) == "csv"
            write = csv_writer(out) if as_csv else _ndjson_writer(out)
            count = 0
            async with aclosing(documents):
                async for document in documents:
                    if stop.stops():
                        break
                    try:
                        write(document)
                    except BrokenPipeError:
                        raise
                    except OSError as error:  # a full disk: said of the file, not the database
                        raise _cannot_write(output, error) from None
                    count += 1
        return count

    stop = _StopRequests()
    try:
        with stop.handled():
            count: int = asyncio.run(_with_runtime(settings, work))
    except BrokenPipeError:  # `searchstats export … | head`
        return 0
    seconds = time.perf_counter() - started
    if stop.cut:
        print(
            "searchstats: export: interrupted: the events before it are written, not the rest",
            file=sys.stderr,
        )
    print(f"searchstats: export: wrote {count} events in {seconds:.1f} s", file=sys.stderr)
    return INTERRUPTED if stop.cut else 0


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    """The export's file, else standard output, written in UTF-8 (what import reads) whatever
    the locale: in another encoding the first character outside it was a traceback, and the
    rest a file import refused as not UTF-8."""
    if not path:
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(encoding="utf-8")
        yield sys.stdout
        return
    try:
        # SIM115: closed below, where its errors are named.
        out = Path(path).open("w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as error:
        raise _cannot_write(path, error) from None
    try:
        yield out
    finally:
        try:
            out.close()  # writes what is buffered: the disk may be full
        except OSError as error:
            raise _cannot_write(path, error) from None


def _cannot_write(path: str | None, error: OSError) -> BadParams:
    where = f"the export file {path}" if path else "standard output"
    return BadParams(f"cannot write {where}: {_reason(error)}")


def _ndjson_writer(out: IO[str]) -> Callable[[dict[str, Any]], None]:
    def write(document: dict[str, Any]) -> None:
        out.write(orjson.dumps(document).decode())
        out.write("\n")

    return write


def csv_writer(out: IO[str]) -> Callable[[dict[str, Any]], None]:
    """Writes the header, then one row per document given: what ``import`` reads back."""
    plain = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    # csv quotes a cell holding a line break only when the break is in its line terminator: a
    # lone "\r" would be written bare, and read back as the end of the line. Rows with one are
    # written with every cell quoted.
    quoted = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writeheader()

    def write(document: dict[str, Any]) -> None:
        row = csv_row(document)
        (quoted if any("\r" in cell for cell in row.values()) else plain).writerow(row)

    return write


def _bound(flag: str, text: str, *, end: bool = False) -> datetime:
    """An ISO date (a whole UTC day; ``--to`` includes it) or an ISO date-time (UTC if naive)."""
    # A date in any of ISO's spellings (2025-03-31, 20250331, 2025-W14-1) is a day: read as a
    # date-time, 20250331 was its first instant, and --to left the day out.
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if not end:
            return moment
        if day == date.max:  # 9999-12-31, "everything": there is no day after it
            return datetime.max.replace(tzinfo=UTC)
        return moment + timedelta(days=1)
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise BadParams(f"{flag} must be an ISO date or date-time, not {text[:40]!r}") from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
