"""Shared machinery of the importers: row reading with line numbers, strict or lenient.

An importer reads rows, converts fields with :meth:`RowContext.get_*`, and either
raises a :class:`~autoflow.errors.TraceError` naming file, line and column (the
default) or, with ``skip_bad_rows``, counts the row under its reason and goes on.
"""

from __future__ import annotations

import csv
import math
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


def read_csv_rows(path: Path, required: list[str], *, delimiter: str = ","
                  ) -> Iterator[tuple[int, dict]]:
    """Yields (line number, row dict) for a CSV with a header; checks the header."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise TraceError(str(path), "empty file (no header line)")
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(str(path), f"missing column(s) {', '.join(missing)}; "
                             f"header has {', '.join(header)}", line=1)
        for row in reader:
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
