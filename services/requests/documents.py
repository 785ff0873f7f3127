"""The requests service's collections: fields and indexes (mapping only).

mongoengine declares what is stored and which indexes exist; the repository writes with
single-document conditional updates on the underlying collections (state, timeline entry and
outbox events together), which is what FerretDB and MongoDB both do atomically.
"""

from __future__ import annotations

import mongoengine as me

from shared.bus.outbox import OutboxDocument
from shared.db import drop_retired_indexes


class PersonDoc(OutboxDocument):
    id = me.StringField(primary_key=True)
    email = me.StringField(required=True)
    name = me.StringField(required=True)
    name_lower = me.StringField(required=True)  # for case-insensitive sort and search
    role = me.StringField(required=True)
    department = me.StringField(required=True)
    title = me.StringField()
    manager_id = me.StringField()
    active = me.BooleanField(default=True)
    hidden = me.BooleanField(default=False)  # "keep me off the leaderboards"
    created_at = me.DateTimeField()
    updated_at = me.DateTimeField()
    version = me.IntField(default=0)

    meta = {
        "collection": "people",
        "indexes": [
            {"fields": ["email"], "unique": True},
            ["name_lower", "id"],
            ["department", "role", "name_lower"],
        ],
    }


class TimelineEntryDoc(me.EmbeddedDocument):
    id = me.StringField(required=True)
    at = me.DateTimeField(required=True)
    actor_id = me.StringField(required=True)
    type = me.StringField(required=True)
    text = me.StringField()
    data = me.DictField()


class RequestDoc(OutboxDocument):
    id = me.StringField(primary_key=True)
    number = me.IntField(required=True)
    requester_id = me.StringField(required=True)
    department = me.StringField(required=True)
    kind = me.StringField(required=True)
    title = me.StringField(required=True)
    details = me.StringField(required=True)
    customer = me.StringField(required=True)
    deal_name = me.StringField()
    deal_value = me.FloatField()
    commitment = me.StringField()
    needed_by = me.DateTimeField(required=True)
    priority = me.StringField(required=True)
    rush_reason = me.StringField()
    status = me.StringField(required=True)
    outcome = me.StringField()
    assignee_ids = me.ListField(me.StringField())
    submitted_at = me.DateTimeField(required=True)
    acknowledged_at = me.DateTimeField()
    delivered_at = me.DateTimeField()
    closed_at = me.DateTimeField()
    cancelled_at = me.DateTimeField()
    last_deal_update_at = me.DateTimeField()
    info_requested_at = me.DateTimeField()
    info_request_count = me.IntField(default=0)
    notice_business_hours = me.FloatField()
    brief_complete = me.BooleanField()
    brief_gaps = me.ListField(me.StringField())
    overdue_at = me.DateTimeField()
    update_due_at = me.DateTimeField()
    update_due_count = me.IntField(default=0)
    info_due_at = me.DateTimeField()
    version = me.IntField(default=0)
    timeline = me.EmbeddedDocumentListField(TimelineEntryDoc)

    # The number is unique (numbers come from one counter: a safety net). No other index: every
    # read goes by _id, to the document or to its read models (readmodels.py); the indexes of
    # the lists before them cost every insert and update and answered nothing (RETIRED).
    meta = {
        "collection": "requests",
        "indexes": [
            {"fields": ["number"], "unique": True},
        ],
    }

    # Indexes of an older version, by their first field, dropped at start (ensure_indexes).
    RETIRED = ("requester_id", "department", "assignee_ids", "overdue_at", "update_due_at", "info_due_at")


class CounterDoc(me.Document):
    id = me.StringField(primary_key=True)
    seq = me.IntField(default=0)
    meta = {"collection": "counters"}


ALL = (PersonDoc, RequestDoc, CounterDoc)


def ensure_indexes() -> None:
    for doc in ALL:
        doc.ensure_indexes()
    drop_retired_indexes(RequestDoc._get_collection(), RequestDoc.RETIRED)
