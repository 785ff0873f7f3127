"""The requests service's people directory in memory: one freshness check per HTTP call, and
another instance's write seen on the next call (real FerretDB)."""

from __future__ import annotations

import pytest

from services.requests.directory import PeopleDirectory
from services.requests.repository import person_from_doc
from shared.db import connect, disconnect

pytestmark = pytest.mark.integration


class Counted:
    """The counters collection, counting the reads of it."""

    def __init__(self, collection):
        self.collection, self.reads = collection, 0

    def find_one(self, *args, **kwargs):
        self.reads += 1
        return self.collection.find_one(*args, **kwargs)

    def find_one_and_update(self, *args, **kwargs):
        return self.collection.find_one_and_update(*args, **kwargs)


@pytest.fixture
def db(settings):
    database = connect(settings, "directory_test")
    yield database
    disconnect()


def _person(pid: str, name: str) -> dict:
    return {"_id": pid, "email": f"{pid}@example.com", "name": name, "role": "rep", "department": "sales"}


def test_a_call_reads_the_counter_once_and_sees_its_own_and_other_instances_writes(db):
    db["people"].insert_many([_person("ana", "Ana"), _person("bo", "Bo")])
    here_counters, there_counters = Counted(db["counters"]), Counted(db["counters"])
    here = PeopleDirectory(db["people"], here_counters, person_from_doc)
    there = PeopleDirectory(db["people"], there_counters, person_from_doc)

    # Outside a call (consumers, the sweeper), every read checks the counter.
    here.by_id(), here.below("ana")
    assert here_counters.reads == 2
    # Within a call: once, however many reads the call makes.
    here.begin_call()
    here.by_id(), here.below("ana"), here.page(first=5), here.by_id()
    assert here_counters.reads == 3
    # Another instance renames Bo meanwhile: this call keeps its copy, the next call sees it.
    db["people"].update_one({"_id": "bo"}, {"$set": {"name": "Bo Renamed"}})
    there.bump()
    assert here.by_id()["bo"].name == "Bo"
    here.end_call()
    here.begin_call()
    assert here.by_id()["bo"].name == "Bo Renamed" and here.reloads == 2
    # This process's own write in a call is seen in the same call (patched in place).
    db["people"].update_one({"_id": "ana"}, {"$set": {"name": "Ana Mine"}})
    here.bump([(person_from_doc(db["people"].find_one({"_id": "ana"})), 1)])
    assert here.by_id()["ana"].name == "Ana Mine" and here.reloads == 2
    # A write of its own that another one raced: the next read in the call reloads.
    db["people"].update_one({"_id": "bo"}, {"$set": {"name": "Bo Again"}})
    there.bump()
    here.bump([])
    assert here.by_id()["bo"].name == "Bo Again" and here.reloads == 3
    here.end_call()
    reads = here_counters.reads
    here.by_id()
    assert here_counters.reads == reads + 1  # outside a call again: checked every time
