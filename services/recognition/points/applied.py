"""After the applier: tell the live leaderboards that awards are on the boards now.

The gateway pushes ``leaderboardChanged`` when it reads ``points.applied`` (topic
``points-applied``), so a subscriber's board is read after the write that changed it, with no
pause guessed in between. The notice is built from the batch's deliveries (whose points
changed, which period boards), not from what the applier found new: a batch delivered again
(its offsets were not committed) sends the notice again. So a crash between the applier's
write and the publish loses nothing: the batch comes back to this process after its restart,
or to another member of the group, the applier adds nothing twice, and the notice goes out
then; a screen's refresh is late by that restart, never missing.
"""

from __future__ import annotations

import logging
from typing import Iterable

from kafka.errors import KafkaError

from shared.calendar import PERIODS, BusinessCalendar, period_key
from shared.clock import Clock
from shared.db import chunks
from shared.events import Envelope, InvalidEvent, build_event
from shared.events.schemas import APPLIED_MAX_PEOPLE, PointsAwarded

log = logging.getLogger(__name__)
SOURCE = "points"
SUBJECT = "leaderboards"


def applied_events(awards: Iterable[PointsAwarded], calendar: BusinessCalendar, clock: Clock,
                   keys: list[str] | None = None) -> list[Envelope]:
    """The ``points.applied`` notices for a batch of awards: none when no award carries points
    (capped and badge-only awards change no board). ``keys``: only these boards were written
    (one period's board, announced as soon as it is); else every period's of each award."""
    keys_of: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for award in awards:
        if award.points <= 0:
            continue
        keys_of.setdefault(award.person_id, set()).update(
            keys if keys is not None else (period_key(calendar, period, award.at) for period in PERIODS))
        counts[award.person_id] = counts.get(award.person_id, 0) + 1
    return [build_event("points.applied", SUBJECT, {
        "person_ids": part,
        "period_keys": sorted(set().union(*(keys_of[pid] for pid in part))),
        "awards": sum(counts[pid] for pid in part),
    }, source=SOURCE, clock=clock) for part in chunks(list(keys_of), APPLIED_MAX_PEOPLE)]


def announce_applied(publish, awards: Iterable[PointsAwarded], calendar: BusinessCalendar, clock: Clock,
                     keys: list[str] | None = None) -> None:
    """Publish the notices and wait for the broker (the caller commits the batch after this).

    An outage raises (the consumer retries the batch: the applier finds it applied and the
    notice goes out again); a notice that can never be sent is logged and dropped, never a
    reason to dead-letter awards that are already applied.
    """
    try:
        events = applied_events(awards, calendar, clock, keys)
        if events:
            publish(events)
    except KafkaError as exc:
        if exc.retriable:
            raise
        log.error("points.applied not sent: live leaderboards refresh on the next award", extra={"error": repr(exc)})
    except InvalidEvent as exc:
        log.error("points.applied not built: live leaderboards refresh on the next award", extra={"error": str(exc)})


def announce_changed_place(publish, person_id: str, keys: list[str], clock: Clock) -> None:
    """Tell the live leaderboards that a person's place on these boards changed without an
    award (a department or role move, "keep me off the leaderboards" turned on or off): a
    notice with ``awards: 0``, so screens drop or show them at once. Best effort: a notice not
    sent is logged; the boards then refresh on the next award (the change itself is written)."""
    if not keys:
        return
    try:
        publish([build_event("points.applied", SUBJECT, {"person_ids": [person_id], "period_keys": sorted(keys), "awards": 0},
                             source=SOURCE, clock=clock)])
    except (KafkaError, InvalidEvent) as exc:
        log.error("points.applied not sent for a person's change: live leaderboards refresh on the next award",
                  extra={"error": repr(exc)})
