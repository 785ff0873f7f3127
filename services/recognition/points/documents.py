"""The points process's collections: fields and indexes (mapping only).

Stage 1 (scoring) writes ``scored_events`` (one per source event, with its awards in an
outbox), ``request_facts``, ``guards`` and ``submissions``. Stage 2 (applying, one consumer
per person's partition of the ``points`` topic) writes ``ledger``, ``totals``,
``badge_progress`` and ``badge_awards``.
"""

from __future__ import annotations

import mongoengine as me

from services.recognition.directory import DirectoryPersonDoc
from shared.bus.outbox import OutboxDocument


class ScoredEventDoc(OutboxDocument):
    id = me.StringField(primary_key=True)  # the source event id
    type = me.StringField()
    at = me.DateTimeField()
    awards = me.ListField(me.DictField())
    meta = {"collection": "scored_events"}


class RequestFactsDoc(me.Document):
    """What points knows about a request from its events (for rules that span topics)."""

    id = me.StringField(primary_key=True)
    requester_id = me.StringField()
    delivered = me.BooleanField(default=False)
    assignee_ids = me.ListField(me.StringField())
    meta = {"collection": "request_facts"}


class GuardDoc(me.Document):
    """State of a limit or spacing guard; ``ids`` lists the awards it let through."""

    id = me.StringField(primary_key=True)
    ids = me.ListField(me.StringField())
    n = me.IntField(default=0)
    points = me.IntField(default=0)
    last_at = me.DateTimeField()
    last_award = me.StringField()
    meta = {"collection": "guards"}


class SubmissionDoc(me.Document):
    """Submitted requests per rep, for the rush share."""

    id = me.StringField(primary_key=True)  # request id
    requester_id = me.StringField()
    at = me.DateTimeField()
    rush_short_notice = me.BooleanField()
    meta = {"collection": "submissions", "indexes": [["requester_id", "at"]]}


class LedgerEntryDoc(me.Document):
    id = me.StringField(primary_key=True)  # the award's entry id
    person_id = me.StringField(required=True)
    points = me.IntField()
    rule = me.StringField()
    reason = me.StringField()
    capped = me.BooleanField()
    source_event_id = me.StringField()
    source_event_type = me.StringField()
    at = me.DateTimeField()
    src = me.StringField()  # "<partition>:<offset>" of the message that applied it
    meta = {"collection": "ledger", "indexes": [["person_id", "at", "id"], "source_event_id"]}


class TotalsDoc(me.Document):
    """A person's points in one period (``key``: 2026-W48, 2026-11, 2026-Q4, all)."""

    id = me.StringField(primary_key=True)  # "<person>:<key>"
    person_id = me.StringField()
    key = me.StringField()
    points = me.IntField(default=0)
    department = me.StringField()
    role = me.StringField()
    applied = me.DictField()  # partition -> last applied offset (idempotence)
    meta = {
        "collection": "totals",
        "indexes": [
            ["key", "-points", "person_id"],
            ["key", "department", "-points", "person_id"],
            ["key", "role", "-points", "person_id"],
            "person_id",
        ],
    }


class BadgeProgressDoc(me.Document):
    id = me.StringField(primary_key=True)  # person id
    badges = me.DictField()
    applied = me.DictField()
    meta = {"collection": "badge_progress"}


class BadgeAwardDoc(OutboxDocument):
    id = me.StringField(primary_key=True)  # "<person>:<badge>:<tier>"
    person_id = me.StringField()
    badge = me.StringField()
    tier = me.StringField()
    evidence = me.ListField(me.StringField())
    at = me.DateTimeField()
    meta = {"collection": "badge_awards", "indexes": ["person_id"]}


ALL = (ScoredEventDoc, RequestFactsDoc, GuardDoc, SubmissionDoc, LedgerEntryDoc, TotalsDoc,
       BadgeProgressDoc, BadgeAwardDoc, DirectoryPersonDoc)


def ensure_indexes() -> None:
    for doc in ALL:
        doc.ensure_indexes()
