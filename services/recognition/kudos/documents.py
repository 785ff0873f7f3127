"""The kudos process's collections: fields and indexes (mapping only).

Writes are single-document conditional updates on the underlying collections (see
``repository.py``): the allowance and weekly caps are counters that only move while below
their limit, so two parallel gives cannot both spend the last kudos.
"""

from __future__ import annotations

import mongoengine as me

from services.recognition.directory import DirectoryPersonDoc
from shared.bus.outbox import OutboxDocument
from shared.db import drop_retired_indexes


class AddOnDoc(me.EmbeddedDocument):
    actor_id = me.StringField(required=True)
    message = me.StringField()
    at = me.DateTimeField(required=True)


class KudosDoc(OutboxDocument):
    id = me.StringField(primary_key=True)
    giver_id = me.StringField(required=True)
    giver_name = me.StringField(required=True)
    recipient_ids = me.ListField(me.StringField(), required=True)
    recipient_names = me.ListField(me.StringField())
    message = me.StringField(required=True)
    values = me.ListField(me.StringField())
    gesture = me.StringField(required=True)
    request_id = me.StringField()
    created_at = me.DateTimeField(required=True)
    add_ons = me.EmbeddedDocumentListField(AddOnDoc)

    # No index but _id: every read is a kudos by _id or a feed page (feeds.py). The indexes of
    # the feeds before them cost every insert and answered nothing (RETIRED).
    meta = {"collection": "kudos"}

    # Indexes of an older version, by their first field, dropped at start (ensure_indexes).
    RETIRED = ("created_at", "giver_id", "recipient_ids")


class AllowanceDoc(me.Document):
    """Kudos spent by a giver in a month: ``_id`` is ``<giver>:<YYYY-MM>``."""

    id = me.StringField(primary_key=True)
    used = me.IntField(default=0)
    meta = {"collection": "allowances"}


class WeeklyCapDoc(me.Document):
    """Kudos from a giver to one person in an ISO week: ``_id`` is ``<giver>:<to>:<YYYY-Www>``."""

    id = me.StringField(primary_key=True)
    count = me.IntField(default=0)
    meta = {"collection": "weekly_caps"}


class ImportBatchDoc(OutboxDocument):
    """The ``kudos.given`` events of up to ten imported kudos (``repository.IMPORT_BATCH``),
    pending until the outbox relay has published them (``handlers.import_history``). Inserted
    before the kudos themselves, so the relay clears one outbox per ten kudos and reads none
    back, and a crash leaves the events recorded: ``_id`` is ``imp:<hash of its kudos ids>``."""

    id = me.StringField(primary_key=True)
    at = me.DateTimeField()
    meta = {"collection": "kudos_imports"}


ALL = (KudosDoc, AllowanceDoc, WeeklyCapDoc, ImportBatchDoc, DirectoryPersonDoc)


def ensure_indexes() -> None:
    for doc in ALL:
        doc.ensure_indexes()
    drop_retired_indexes(KudosDoc._get_collection(), KudosDoc.RETIRED)
