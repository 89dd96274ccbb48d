"""Shared machinery of the importers: row reading with line numbers, strict or lenient.

An importer reads rows, converts fields with :meth:`RowContext.get_*`, and either
raises a :class:`~autoflow.errors.TraceError` naming file, line and column (the
default) or, with ``skip_bad_rows``, counts the row under its reason and goes on.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import TraceError
from ..job import Job
from ..workload import ImportSummary, Workload


class BadRow(Exception):
    """Raised inside an importer's row function; carries the column and the reason."""

    def __init__(self, column: str | None, reason: str):
        super().__init__(reason)
        self.column = column
        self.reason = reason


@dataclass
class ImportOptions:
    skip_bad_rows: bool = False
    seed: int = 0


def check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise TraceError(str(path), "file not found")
    if p.is_dir():
        raise TraceError(str(path), "is a folder, expected a file")
    return p


def req(row: dict, col: str) -> str:
    v = row.get(col)
    if v is None or str(v).strip() == "":
        raise BadRow(col, "missing value")
    return str(v).strip()


def as_float(row: dict, col: str, *, optional: bool = False, min_value: float | None = None
             ) -> float | None:
    v = row.get(col)
    if v is None or str(v).strip() == "":
        if optional:
            return None
        raise BadRow(col, "missing value")
    try:
        x = float(v)
    except ValueError:
        raise BadRow(col, f"not a number: {str(v)[:40]!r}") from None
    if math.isnan(x) or math.isinf(x):
        raise BadRow(col, f"not a finite number: {v!r}")
    if min_value is not None and x < min_value:
        what = "negative" if min_value == 0 else f"below {min_value}"
        raise BadRow(col, f"{what} value {x:g}")
    return x


def as_int(row: dict, col: str, *, optional: bool = False, min_value: int | None = None
           ) -> int | None:
    x = as_float(row, col, optional=optional, min_value=min_value)
    if x is None:
        return None
    if x != int(x):
        raise BadRow(col, f"not an integer: {row.get(col)!r}")
    return int(x)


GZIP_MAGIC = b"\x1f\x8b"
BAD_ROW = "_bad_row"  # a row that could not be read: (column, reason) for convert_rows


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_text(path: Path):
    """Opens a trace for reading as text, gzip-compressed or not (the magic bytes decide,
    whatever the name). A UTF-8 byte-order mark (Excel exports) is dropped; bytes that
    are not UTF-8 are kept as lone surrogates, so that :func:`bad_text` can name the row
    that holds them instead of the whole import failing on a decode error."""
    try:
        if is_gzip(path):
            return gzip.open(path, "rt", encoding="utf-8-sig", errors="surrogateescape",
                             newline="")
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as e:
        raise TraceError(str(path), f"cannot read: {e.strerror or e}") from None


def bad_text(values) -> str | None:
    """The reason a row's text is unusable (bytes that are not UTF-8), or None."""
    text = "".join(v for v in values if isinstance(v, str))
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not UTF-8 text (binary or another encoding; save the file as UTF-8)"
    return None


def read_errors(path: Path, where: Callable[[], int | None]):
    """Turns what a damaged or non-text file raises while it is read (a broken gzip
    stream, a CSV field over the size limit) into a TraceError naming file and line."""
    return _ReadErrors(path, where)


class _ReadErrors:
    def __init__(self, path: Path, where: Callable[[], int | None]):
        self.path, self.where = path, where

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if e is None or isinstance(e, TraceError):
            return False
        if isinstance(e, csv.Error):
            reason = str(e)
            if "field larger than field limit" in reason:
                reason = (f"a field over {csv.field_size_limit() // 1024} KiB (an unclosed quote "
                          "or not a CSV file?)")
            raise TraceError(str(self.path), f"not a readable CSV: {reason}",
                             line=self.where()) from None
        if isinstance(e, EOFError | zlib.error | gzip.BadGzipFile):
            raise TraceError(str(self.path), f"damaged gzip data: {e or 'truncated'}",
                             line=self.where()) from None
        if isinstance(e, UnicodeError):
            raise TraceError(str(self.path), "not UTF-8 text", line=self.where()) from None
        if isinstance(e, OSError):
            raise TraceError(str(self.path), f"cannot read: {e.strerror or e}") from None
        return False


def read_csv_rows(path: Path, required: list[str], *, delimiter: str = ","
                  ) -> Iterator[tuple[int, dict]]:
    """Yields (line number, row dict) for a CSV with a header; checks the header.

    Reads gzip-compressed files too and drops a UTF-8 byte-order mark. A row with bytes
    that are not UTF-8 comes with ``row[BAD_ROW]`` set (``convert_rows`` reports or skips
    it); so does a row that the csv module cannot parse, when more rows follow."""
    with open_text(path) as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        with read_errors(path, lambda: reader.reader.line_num or 1):
            header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise TraceError(str(path), "empty file (no header line)")
        if bad_text(header):
            raise TraceError(str(path), "not a text trace: the header line is not UTF-8 text "
                             "(a binary file, or another encoding: save it as UTF-8)", line=1)
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            shown = ", ".join(h[:40] for h in header[:30])
            raise TraceError(str(path), f"missing column(s) {', '.join(missing)}; "
                             f"header has {shown}" + (" ..." if len(header) > 30 else ""),
                             line=1)
        with read_errors(path, lambda: reader.reader.line_num):
            for row in reader:
                reason = bad_text(row.values() if None not in row
                                  else [*(v for k, v in row.items() if k is not None),
                                        *row[None]])
                if reason:
                    row = {BAD_ROW: (None, reason)}
                yield reader.line_num, row


def convert_rows(path: Path, rows: Iterator[tuple[int, dict]],
                 to_job: Callable[[dict, ImportSummary], Job | None],
                 summary: ImportSummary, opts: ImportOptions) -> list[Job]:
    """Runs ``to_job`` on every row; a BadRow stops the import or is counted as skipped.

    ``to_job`` returns None for rows that are left out *by a documented choice*; it
    must then record the reason in ``summary`` itself.
    """
    jobs: list[Job] = []
    for line, row in rows:
        summary.rows_read += 1
        try:
            if BAD_ROW in row:
                raise BadRow(*row[BAD_ROW])
            if None in row:
                raise BadRow(None, f"{len(row) - 1 + len(row[None])} fields, expected "
                             f"{len(row) - 1}")
            job = to_job(row, summary)
        except BadRow as e:
            if not opts.skip_bad_rows:
                raise TraceError(str(path), e.reason, line=line, column=e.column) from None
            summary.skip(f"bad {e.column or 'row'}: {_reason_kind(e.reason)}")
            continue
        except ValueError as e:  # Job's own validation
            if not opts.skip_bad_rows:
                raise TraceError(str(path), str(e), line=line) from None
            summary.skip("invalid job")
            continue
        if job is not None:
            jobs.append(job)
    return jobs


def _reason_kind(reason: str) -> str:
    """Groups skip reasons: 'not a number: 'x'' -> 'not a number'."""
    return reason.split(":")[0].split(" value")[0]


def finish(jobs: list[Job], source: str, path: str, summary: ImportSummary) -> Workload:
    if not jobs:
        detail = f" ({summary.rows_skipped} rows skipped)" if summary.rows_skipped else ""
        raise TraceError(path, f"empty trace: no jobs{detail}")
    summary.source = source
    summary.jobs = len(jobs)
    return Workload(jobs, source=source, summary=summary)
