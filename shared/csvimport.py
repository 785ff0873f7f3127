"""Imports of history from CSV files (``insidetrack import-kudos``, ``import-requests``).

Both imports work the same way, so they share this:

- the service's side: :func:`parse_rows` reads the records of a file (a header row, then one
  record per row; a quoted cell may span lines), reports every bad row by the line of the whole
  file it starts on (``{line, field, code, message}``), and hands each good row to the
  service's own row parser; :func:`parse_instant` reads a date-time cell the same way everywhere;
- the command line's side: :func:`file_parts` cuts a big file into parts the service takes in
  one call (rows and bytes), and :func:`send_file` posts them one after the other as the admin.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any, Callable, Iterator, TypeVar

from shared.clock import NotAnInstant, instant_from_iso, utc
from shared.errors import AppError, BadInput

T = TypeVar("T")

PART_ROWS = 5_000
# The services take bodies up to 1 MiB (shared/web.py); a part stays under it with its header.
PART_BYTES = 900_000


class RowError(Exception):
    """A row the import refuses: reported by line with this field, code and message."""

    def __init__(self, field: str | None, code: str, message: str):
        super().__init__(message)
        self.field, self.code, self.message = field, code, message


def row_error(line: int, field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"line": line, "field": field, "code": code, "message": message}


def split_list(value: str) -> list[str]:
    """A cell holding several values separated by ``;`` (emails, company values)."""
    return [part.strip() for part in value.split(";") if part.strip()]


def parse_instant(raw: dict[str, str], column: str, now: datetime | None = None) -> datetime | None:
    """The cell ``column`` as a UTC date-time (None when empty): ISO 8601 with an offset
    (``2026-01-12T09:30:00+01:00`` or ``Z``), cut to milliseconds (what BSON keeps, so ids and
    comparisons made from it hold after a round trip); with ``now``, never later than it."""
    text = (raw.get(column) or "").strip()
    if not text:
        return None
    try:
        at = instant_from_iso(text)
    except NotAnInstant as exc:
        raise RowError(column, f"invalid_{column}", f"{column} needs an offset (e.g. Z or +01:00)" if exc.reason == "no_timezone"
                       else f"{column} {text!r} is not an ISO 8601 date-time") from None
    at = utc(at).replace(microsecond=at.microsecond // 1000 * 1000)
    if now is not None and at > now:
        raise RowError(column, f"{column}_in_future", f"{column} {text} is in the future")
    return at


def csv_lines(text: str) -> io.StringIO:
    """A CSV text to read with ``csv``: its byte-order mark dropped, and every line ending
    (``\n``, ``\r\n``, a lone ``\r``) left to the reader, as ``csv`` asks of files
    (``newline=""``); read otherwise, a lone ``\r`` in a cell is an error, not a line end."""
    return io.StringIO(text.lstrip("\ufeff"), newline="")


def unreadable(line: int, exc: Exception) -> BadInput:
    """The file's refusal when ``csv`` cannot read on at ``line`` (a cell over its size limit,
    say): nothing of the file is taken."""
    return BadInput("unreadable_csv", f"line {line}: the CSV cannot be read ({exc})", field="csv")


def guarded(records: Iterator[T], line: Callable[[], int]) -> Iterator[T]:
    """``records`` (a ``csv`` reader's) until the reader cannot read on: then the file's
    refusal (:func:`unreadable`) at ``line()``."""
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except csv.Error as exc:
            raise unreadable(line(), exc) from None
        yield record


def parse_rows(text: Any, columns: tuple[str, ...], required: tuple[str, ...], max_rows: int, line_offset: int,
               parse_row: Callable[[int, dict[str, str]], T]) -> tuple[list[T], list[dict[str, Any]]]:
    """(what ``parse_row(line, cells by column)`` made of the good rows, the bad rows as errors
    by line). ``line_offset`` is added to the line numbers (a part of a bigger file). A row
    ``parse_row`` refuses raises :class:`RowError` or an ``AppError`` (the domain's refusals).
    Raises BadInput for a file it cannot take at all: empty, a header naming unknown columns
    or lacking ``required`` ones, more than ``max_rows`` rows."""
    if not isinstance(text, str) or not text.strip():
        raise BadInput("empty_csv", "the CSV is empty", field="csv")
    reader = csv.reader(csv_lines(text))
    header = [(h or "").strip().lower() for h in next(guarded(reader, lambda: reader.line_num), [])]
    missing = [c for c in required if c not in header]
    unknown = [h for h in header if h not in columns]
    if missing or unknown:
        what = f"the header lacks {', '.join(missing)}" if missing else f"unknown column(s) {', '.join(unknown)}"
        raise BadInput("bad_csv_header", f"{what}; expected {','.join(columns)}", field="csv")

    good: list[T] = []
    errors: list[dict[str, Any]] = []
    start = reader.line_num + 1  # the line the next record starts on
    for cells in guarded(reader, lambda: reader.line_num + line_offset):
        line, start = start + line_offset, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(good) + len(errors) >= max_rows:
            raise BadInput("csv_too_large", f"at most {max_rows} rows per call", field="csv")
        if len(cells) > len(header):
            errors.append(row_error(line, None, "too_many_cells", "more cells than the header has columns"))
            continue
        raw = {k: v.strip() for k, v in zip(header, cells)}
        try:
            good.append(parse_row(line, raw))
        except (RowError, AppError) as exc:
            errors.append(row_error(line, exc.field, exc.code, exc.message))
    return good, errors


# -- the command line's side: send a file in parts to the running service ---------------------------

def file_parts(text: str, rows_per_part: int = PART_ROWS, max_bytes: int = PART_BYTES) -> list[tuple[str, int]]:
    """Split CSV text into parts of at most ``rows_per_part`` records and ``max_bytes`` (UTF-8,
    header included; a single record longer than that is a part of its own), each with the header, cut
    on record boundaries (a quoted cell may span lines); with the ``line_offset`` that makes
    each part's line numbers those of the whole file."""
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines:
        return [(text, 0)]
    reader = csv.reader(lines)
    next(reader, None)
    header_end = reader.line_num  # lines [0, header_end) are the header
    header_bytes = sum(len(line.encode("utf-8")) for line in lines[:header_end])
    parts: list[tuple[str, int]] = []
    start, end, count, size = header_end, header_end, 0, header_bytes  # the part being filled: lines [start, end)

    def cut() -> None:
        parts.append(("".join(lines[:header_end] + lines[start:end]), start - header_end))

    for _ in reader:
        record = sum(len(line.encode("utf-8")) for line in lines[end:reader.line_num])
        if count and size + record > max_bytes:  # this record would not fit: the part ends before it
            cut()
            start, count, size = end, 0, header_bytes
        end, count, size = reader.line_num, count + 1, size + record
        if count == rows_per_part:
            cut()
            start, count, size = end, 0, header_bytes
    if count or not parts:
        end = len(lines)
        cut()
    return parts


def send_file(base_url: str, path: str, headers: dict[str, str], text: str, actor_email: str,
              rows_per_part: int = PART_ROWS, say=lambda line: None, timeout: float = 600) -> dict[str, Any]:
    """POST the file to ``base_url + path`` (``/kudos/import``, ``/requests/import``) part by
    part, as the admin ``actor_email``; the summed report ``{imported, already_imported,
    rejected, errors}`` (and any other count the service gives). Raises ``RuntimeError`` with the service's message when a part is
    refused as a whole (not an admin, a bad header)."""
    import requests as http

    total: dict[str, Any] = {"imported": 0, "already_imported": 0, "rejected": 0, "errors": []}
    parts = file_parts(text, rows_per_part)
    with http.Session() as session:
        for n, (part, offset) in enumerate(parts, 1):
            response = session.post(f"{base_url}{path}", params={"line_offset": offset, "actor_email": actor_email},
                                    data=part.encode("utf-8"), timeout=timeout,
                                    headers={**headers, "Content-Type": "text/csv; charset=utf-8"})
            body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
            if response.status_code != 200:
                error = body.get("error") or {}
                raise RuntimeError(error.get("message") or f"{base_url}{path} answered {response.status_code}")
            for key, value in body.items():  # the counts (and whatever else a service counts: events)
                if isinstance(value, int) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
            total["errors"] += body["errors"]
            if len(parts) > 1:
                say(f"part {n}/{len(parts)}: {body['imported']} imported, {body['already_imported']} already there, "
                    f"{body['rejected']} rejected")
    return total
