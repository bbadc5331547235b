"""An import file as ``(line number, document)`` pairs: NDJSON or CSV, read a line at a time.

Whatever a file holds, reading it never raises past its header: a line that cannot be read
(invalid UTF-8, longer than the limit, not CSV) becomes the ``BadParams`` that names it, in the
document's place, and reading goes on at the next line. A line is never held whole past the
limit: the rest of an over-long line is read in chunks and dropped. Only a file that fails to be
read (a disk error) ends the reading, with a ``BadParams`` that names the file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any

import orjson

from app.domain.event_documents import CSV_COLUMNS, csv_document
from app.errors import BadParams

# What a spreadsheet puts before the first column's name when it saves a CSV file as UTF-8, and
# Windows tools before the first line of a text file ("UTF-8 with BOM").
BYTE_ORDER_MARK = "\ufeff"
UTF8_BYTE_ORDER_MARK = BYTE_ORDER_MARK.encode()
UTF16_BYTE_ORDER_MARKS = (BYTE_ORDER_MARK.encode("utf-16-le"), BYTE_ORDER_MARK.encode("utf-16-be"))

Advance = Callable[[int], None]
Documents = Generator[tuple[int, Any]]
SKIP_CHUNK = 1 << 20  # the rest of an over-long line is read and dropped this much at a time


class LineProblem(Exception):
    """A line that cannot be read as text, raised through ``csv`` to the loop that reads rows."""

    def __init__(self, number: int, message: str) -> None:
        super().__init__(message)
        self.number = number
        self.message = message


class Lines:
    """The lines of a binary file, each at most ``limit`` bytes, counted from 1.

    An over-long line raises ``LineProblem`` once its first ``limit`` bytes are read; the next
    call goes on at the line after it.
    """

    def __init__(self, source: IO[bytes], *, limit: int, advance: Advance) -> None:
        self.source = source
        self.limit = limit
        self.advance = advance
        self.number = 0  # the last line read

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> bytes:
        # Room for the line's end, "\n" or "\r\n", which the limit does not count: a line of
        # exactly the limit is a body a door takes (it was refused as longer than the limit).
        raw = self._read(self.limit + 2)
        if not raw:
            raise StopIteration
        self.number += 1
        self.advance(len(raw))
        if len(raw) - _line_end(raw) > self.limit:
            self._drop_rest(raw)
            raise LineProblem(self.number, f"the line is longer than {self.limit} bytes")
        return raw

    def _drop_rest(self, raw: bytes) -> None:
        while not raw.endswith(b"\n"):
            raw = self._read(SKIP_CHUNK)
            if not raw:
                return
            self.advance(len(raw))

    def _read(self, size: int) -> bytes:
        try:
            return self.source.readline(size)
        except OSError as error:  # a disk or network failure, not the file's contents
            name = self.source.name if isinstance(self.source.name, str) else "the file"
            raise cannot_read(name, error) from None


def _line_end(raw: bytes) -> int:
    """The length of the line end that ``raw`` ends with: "\r\n", "\n", or none."""
    if raw.endswith(b"\n"):
        return 2 if raw.endswith(b"\r\n") else 1
    return 0


def cannot_read(name: str, error: OSError) -> BadParams:
    """The import file ``name`` could not be opened or read."""
    return BadParams(f"cannot read the import file {name}: {error.strerror or error}")


class TextLines:
    """``Lines`` decoded as UTF-8, for ``csv``; a record (which quoted line breaks may spread
    over several lines) is also held to ``limit`` bytes, counted since ``start_record``."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.record_bytes = 0

    def __iter__(self) -> TextLines:
        return self

    def __next__(self) -> str:
        raw = next(self.lines)
        self.record_bytes += len(raw)
        limit = self.lines.limit
        if self.record_bytes - _line_end(raw) > limit:
            raise LineProblem(self.lines.number, f"the record is longer than {limit} bytes")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise LineProblem(self.lines.number, _not_utf8(raw, self.lines.number)) from None

    def start_record(self) -> int:
        """The number of the line the next record starts on."""
        self.record_bytes = 0
        return self.lines.number + 1


def ndjson_documents(source: IO[bytes], advance: Advance, *, limit: int) -> Documents:
    """One JSON document a line; blank lines are skipped (and counted)."""
    lines = Lines(source, limit=limit, advance=advance)
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except LineProblem as problem:
            yield problem.number, BadParams(problem.message)
            continue
        if lines.number == 1 and raw.startswith(UTF8_BYTE_ORDER_MARK):
            raw = raw[len(UTF8_BYTE_ORDER_MARK) :]
        if not raw.strip():
            continue
        try:
            yield lines.number, orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield lines.number, BadParams(_not_json(raw, lines.number))


def csv_documents(source: IO[bytes], advance: Advance, *, limit: int) -> Documents:
    """A header line naming the columns (``type`` and camelCase fields), then one row a line; a
    header that is not one raises ``BadParams``. A row's number is the line it starts on."""
    lines = TextLines(Lines(source, limit=limit, advance=advance))
    # strict: a quote left open is an error at the end of the file, not a field that swallowed
    # every line after it; and a quote that closes a field must be followed by a comma.
    rows = csv.reader(lines, strict=True)
    columns = _csv_header(rows)
    while True:
        start = lines.start_record()
        try:
            cells = next(rows)
        except StopIteration:
            return
        except LineProblem as problem:
            yield problem.number, BadParams(problem.message)
            continue
        except csv.Error as error:
            yield start, BadParams(_not_csv(error))
            continue
        if not cells:  # a blank line
            continue
        if len(cells) > len(columns):
            extra = f"{len(cells)} cells, but the header names {len(columns)} columns"
            yield start, BadParams(extra)
            continue
        try:
            yield start, csv_document(dict(zip(columns, cells, strict=False)))
        except BadParams as error:
            yield start, error


def _csv_header(rows: Iterator[list[str]]) -> list[str]:
    try:
        columns = next(rows, [])
    except LineProblem as unreadable:
        raise BadParams(f"line {unreadable.number}: {unreadable.message}") from None
    except csv.Error as error:
        raise BadParams(f"line 1: {_not_csv(error)}") from None
    if columns and columns[0].startswith(BYTE_ORDER_MARK):  # a file saved by Excel
        columns[0] = columns[0][len(BYTE_ORDER_MARK) :]
    unknown = [column for column in columns if column not in CSV_COLUMNS]
    if "type" not in columns or unknown:
        problem = f"unknown columns {', '.join(unknown)}" if unknown else "no type column"
        raise BadParams(f"line 1: {problem}; known columns: {', '.join(CSV_COLUMNS)}")
    return columns


def _not_json(raw: bytes, number: int) -> str:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return _not_utf8(raw, number)
    return "the line is not valid JSON"


def _not_utf8(raw: bytes, number: int) -> str:
    """What is wrong with a line that is not UTF-8; for a first line starting with UTF-16's byte
    order mark (what Windows PowerShell 5's ``>`` writes), what to do about it."""
    if number == 1 and raw.startswith(UTF16_BYTE_ORDER_MARKS):
        return "the file is UTF-16, not UTF-8: save it as UTF-8 and import it again"
    return "the line is not valid UTF-8"


def _not_csv(error: csv.Error) -> str:
    text = str(error)
    # Both are also what a quote that is never closed leads to: every line after it one field.
    if "field limit" in text:
        limit = csv.field_size_limit()
        return f"a field is longer than {limit} characters, or a quote is never closed"
    if "end of data" in text:
        return "a quote is never closed: its field runs to the end of the file"
    return f"not valid CSV: {text}"
