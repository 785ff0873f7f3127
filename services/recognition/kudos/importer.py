"""Kudos history from a CSV file (``insidetrack import-kudos``), rules with no I/O.

Header row: ``created_at,giver_email,recipient_emails,message,gesture,values``.
``created_at`` is ISO 8601 with an offset; ``recipient_emails`` and ``values`` are separated by
``;``; ``gesture`` is one of thanks, coffee, lunch, flowers, high_five (empty: thanks);
``values`` may be empty. History is not spending: the monthly allowance and the weekly cap do
not apply. Self-kudos, unknown people, unknown values and gestures, empty or long messages and
dates in the future are refused by line. People who have left since (inactive) may appear.

The kudos id is a hash of the row's content, so importing the same file twice imports nothing
new (and a row repeated in one file is one kudos).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.recognition.directory import DirectoryPerson
from services.recognition.kudos.domain import GESTURES, MAX_MESSAGE, MAX_RECIPIENTS
from shared.clock import utc
from shared.errors import AppError, BadInput
from shared.text import clean_text

CSV_COLUMNS = ("created_at", "giver_email", "recipient_emails", "message", "gesture", "values")
REQUIRED = ("created_at", "giver_email", "recipient_emails", "message")
MAX_IMPORT_ROWS = 10_000  # per call; the command sends a big file in parts


@dataclass(frozen=True)
class ImportedKudos:
    line: int
    id: str
    created_at: datetime
    giver: DirectoryPerson
    recipients: list[DirectoryPerson]
    message: str
    gesture: str
    values: list[str]


def kudos_id_for(created_at: datetime, giver_email: str, recipient_emails: list[str], message: str,
                 gesture: str, values: list[str]) -> str:
    """The same row always gives the same id (a reimport finds it there)."""
    content = "\x1f".join([utc(created_at).isoformat(timespec="milliseconds"), giver_email, ";".join(recipient_emails),
                           message, gesture, ";".join(values)])
    return "k_i" + hashlib.sha256(content.encode()).hexdigest()[:24]


def _error(line: int, field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"line": line, "field": field, "code": code, "message": message}


class _RowError(Exception):
    def __init__(self, field: str | None, code: str, message: str):
        super().__init__(message)
        self.field, self.code, self.message = field, code, message


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def parse_csv(text: str, people_by_email: dict[str, DirectoryPerson], company_values: tuple[str, ...],
              now: datetime, line_offset: int = 0) -> tuple[list[ImportedKudos], list[dict[str, Any]]]:
    """The good rows as kudos and the bad ones as errors by line (``line_offset`` is added to
    the line numbers: a part of a bigger file). Raises BadInput for a file it cannot read."""
    if not isinstance(text, str) or not text.strip():
        raise BadInput("empty_csv", "the CSV is empty", field="csv")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [(h or "").strip().lower() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if missing or unknown:
        what = f"the header lacks {', '.join(missing)}" if missing else f"unknown column(s) {', '.join(unknown)}"
        raise BadInput("bad_csv_header", f"{what}; expected {','.join(CSV_COLUMNS)}", field="csv")

    good: list[ImportedKudos] = []
    errors: list[dict[str, Any]] = []
    start = reader.line_num + 1  # the line the next record starts on
    for cells in reader:
        line, start = start + line_offset, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(good) + len(errors) >= MAX_IMPORT_ROWS:
            raise BadInput("csv_too_large", f"at most {MAX_IMPORT_ROWS} rows per call", field="csv")
        if len(cells) > len(header):
            errors.append(_error(line, None, "too_many_cells", "more cells than the header has columns"))
            continue
        raw = {k: v.strip() for k, v in zip(header, cells)}
        try:
            good.append(_row(line, raw, people_by_email, company_values, now))
        except _RowError as exc:
            errors.append(_error(line, exc.field, exc.code, exc.message))
        except AppError as exc:
            errors.append(_error(line, exc.field, exc.code, exc.message))
    return good, errors


def _row(line: int, raw: dict[str, str], people: dict[str, DirectoryPerson], company_values: tuple[str, ...],
         now: datetime) -> ImportedKudos:
    try:
        created_at = datetime.fromisoformat(raw.get("created_at", "").replace("Z", "+00:00"))
    except ValueError:
        raise _RowError("created_at", "invalid_created_at",
                        f"created_at {raw.get('created_at')!r} is not an ISO 8601 date-time") from None
    if created_at.tzinfo is None:
        raise _RowError("created_at", "invalid_created_at", "created_at needs an offset (e.g. Z or +01:00)")
    created_at = utc(created_at).replace(microsecond=created_at.microsecond // 1000 * 1000)  # what BSON keeps
    if created_at > now:
        raise _RowError("created_at", "created_at_in_future", f"created_at {raw['created_at']} is in the future")

    giver_email = raw.get("giver_email", "").lower()
    if not giver_email:
        raise _RowError("giver_email", "missing_giver", "giver_email is empty")
    giver = people.get(giver_email)
    if giver is None:
        raise _RowError("giver_email", "unknown_giver", f"{giver_email} is not in the directory")

    recipient_emails = list(dict.fromkeys(e.lower() for e in _split(raw.get("recipient_emails", ""))))
    if not recipient_emails:
        raise _RowError("recipient_emails", "missing_recipients", "recipient_emails is empty")
    if len(recipient_emails) > MAX_RECIPIENTS:
        raise _RowError("recipient_emails", "too_many_recipients", f"at most {MAX_RECIPIENTS} people per kudos")
    if giver_email in recipient_emails:
        raise _RowError("recipient_emails", "kudos_to_self", "kudos are for others: the giver is among the recipients")
    unknown = [e for e in recipient_emails if e not in people]
    if unknown:
        raise _RowError("recipient_emails", "unknown_recipient", f"not in the directory: {', '.join(unknown)}")

    message = clean_text(raw.get("message", ""))
    if not message:
        raise _RowError("message", "empty_message", "the message is empty")
    if len(message) > MAX_MESSAGE:
        raise _RowError("message", "message_too_long", f"the message is longer than {MAX_MESSAGE} characters")

    gesture = (raw.get("gesture") or "thanks").lower()
    if gesture not in GESTURES:
        raise _RowError("gesture", "unknown_gesture", f"gesture must be one of {', '.join(GESTURES)}")

    values = list(dict.fromkeys(v.lower() for v in _split(raw.get("values", ""))))
    bad = [v for v in values if v not in company_values]
    if bad:
        raise _RowError("values", "unknown_value", f"not a company value: {', '.join(bad)} (values: {', '.join(company_values)})")

    return ImportedKudos(
        line=line, id=kudos_id_for(created_at, giver_email, recipient_emails, message, gesture, values),
        created_at=created_at, giver=giver, recipients=[people[e] for e in recipient_emails], message=message,
        gesture=gesture, values=values,
    )


# -- the command line's side: send a file in parts to the running kudos process -----------------

PART_ROWS = 5_000


def file_parts(text: str, rows_per_part: int = PART_ROWS) -> list[tuple[str, int]]:
    """Split CSV text into parts of at most ``rows_per_part`` records, each with the header, cut
    on record boundaries (a quoted cell may span lines); with the ``line_offset`` that makes
    each part's line numbers those of the whole file."""
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines:
        return [(text, 0)]
    reader = csv.reader(lines)
    next(reader, None)
    header_end = reader.line_num  # lines [0, header_end) are the header
    parts: list[tuple[str, int]] = []
    start, count = header_end, 0
    for _ in reader:
        count += 1
        if count == rows_per_part:
            end = reader.line_num
            parts.append(("".join(lines[:header_end] + lines[start:end]), start - header_end))
            start, count = end, 0
    if count or not parts:
        parts.append(("".join(lines[:header_end] + lines[start:]), start - header_end))
    return parts


def send_file(base_url: str, headers: dict[str, str], text: str, actor_email: str,
              rows_per_part: int = PART_ROWS, say=lambda line: None, timeout: float = 600) -> dict[str, Any]:
    """POST the file to ``/kudos/import`` part by part; the summed report. Raises AppError-like
    ``RuntimeError`` with the service's message when a part is refused as a whole."""
    import requests as http

    total: dict[str, Any] = {"imported": 0, "already_imported": 0, "rejected": 0, "errors": []}
    session = http.Session()
    parts = file_parts(text, rows_per_part)
    for n, (part, offset) in enumerate(parts, 1):
        response = session.post(f"{base_url}/kudos/import", params={"line_offset": offset, "actor_email": actor_email},
                                data=part.encode("utf-8"), timeout=timeout,
                                headers={**headers, "Content-Type": "text/csv; charset=utf-8"})
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        if response.status_code != 200:
            error = body.get("error") or {}
            raise RuntimeError(error.get("message") or f"the kudos service answered {response.status_code}")
        for key in ("imported", "already_imported", "rejected"):
            total[key] += body[key]
        total["errors"] += body["errors"]
        if len(parts) > 1:
            say(f"part {n}/{len(parts)}: {body['imported']} imported, {body['already_imported']} already there, "
                f"{body['rejected']} rejected")
    return total
