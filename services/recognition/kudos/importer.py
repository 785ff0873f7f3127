"""Kudos history from a CSV file (``insidetrack import-kudos``), rules with no I/O.

Header row: ``created_at,giver_email,recipient_emails,message,gesture,values``.
``created_at`` is ISO 8601 with an offset; ``recipient_emails`` and ``values`` are separated by
``;``; ``gesture`` is one of thanks, coffee, lunch, flowers, high_five (empty: thanks);
``values`` may be empty. History is not spending: the monthly allowance and the weekly cap do
not apply. Self-kudos, unknown people, unknown values and gestures, empty or long messages and
dates in the future are refused by line. People who have left since (inactive) may appear.

The kudos id is a hash of the row's content, so importing the same file twice imports nothing
new (and a row repeated in one file is one kudos). Reading the file and sending it in parts:
``shared/csvimport.py`` (shared with the request history import).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.recognition.person import DirectoryPerson
from services.recognition.kudos.domain import GESTURES, MAX_MESSAGE, MAX_RECIPIENTS
from shared.clock import utc
from shared.csvimport import RowError, parse_instant, parse_rows, split_list
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


def parse_csv(text: str, people_by_email: dict[str, DirectoryPerson], company_values: tuple[str, ...],
              now: datetime, line_offset: int = 0) -> tuple[list[ImportedKudos], list[dict[str, Any]]]:
    """The good rows as kudos and the bad ones as errors by line (``line_offset`` is added to
    the line numbers: a part of a bigger file). Raises BadInput for a file it cannot read."""
    return parse_rows(text, CSV_COLUMNS, REQUIRED, MAX_IMPORT_ROWS, line_offset,
                      lambda line, raw: _row(line, raw, people_by_email, company_values, now))


def _row(line: int, raw: dict[str, str], people: dict[str, DirectoryPerson], company_values: tuple[str, ...],
         now: datetime) -> ImportedKudos:
    created_at = parse_instant(raw, "created_at", now)
    if created_at is None:
        raise RowError("created_at", "invalid_created_at", "created_at is empty")

    giver_email = raw.get("giver_email", "").lower()
    if not giver_email:
        raise RowError("giver_email", "missing_giver", "giver_email is empty")
    giver = people.get(giver_email)
    if giver is None:
        raise RowError("giver_email", "unknown_giver", f"{giver_email} is not in the directory")

    recipient_emails = list(dict.fromkeys(e.lower() for e in split_list(raw.get("recipient_emails", ""))))
    if not recipient_emails:
        raise RowError("recipient_emails", "missing_recipients", "recipient_emails is empty")
    if len(recipient_emails) > MAX_RECIPIENTS:
        raise RowError("recipient_emails", "too_many_recipients", f"at most {MAX_RECIPIENTS} people per kudos")
    if giver_email in recipient_emails:
        raise RowError("recipient_emails", "kudos_to_self", "kudos are for others: the giver is among the recipients")
    unknown = [e for e in recipient_emails if e not in people]
    if unknown:
        raise RowError("recipient_emails", "unknown_recipient", f"not in the directory: {', '.join(unknown)}")

    message = clean_text(raw.get("message", ""))
    if not message:
        raise RowError("message", "empty_message", "the message is empty")
    if len(message) > MAX_MESSAGE:
        raise RowError("message", "message_too_long", f"the message is longer than {MAX_MESSAGE} characters")

    gesture = (raw.get("gesture") or "thanks").lower()
    if gesture not in GESTURES:
        raise RowError("gesture", "unknown_gesture", f"gesture must be one of {', '.join(GESTURES)}")

    values = list(dict.fromkeys(v.lower() for v in split_list(raw.get("values", ""))))
    bad = [v for v in values if v not in company_values]
    if bad:
        raise RowError("values", "unknown_value", f"not a company value: {', '.join(bad)} (values: {', '.join(company_values)})")

    return ImportedKudos(
        line=line, id=kudos_id_for(created_at, giver_email, recipient_emails, message, gesture, values),
        created_at=created_at, giver=giver, recipients=[people[e] for e in recipient_emails], message=message,
        gesture=gesture, values=values,
    )
