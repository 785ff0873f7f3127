"""The insights read model's documents: what insights.py writes and insights_read.py reads.

- ``d:<department>:<period key>``: a department's counters and histograms of business hours
  (``BINS``: a median or p90 is the upper bound of the bin it falls in);
- ``pb:<bucket>:<period key>``: the people of a bucket (``INSIGHTS_BUCKETS``), each under their
  own field (``_person_key``) as one JSON string, with the document's offsets ``o`` and version ``v``;
- ``pv:<period key>``: the versions of the key's people's documents and the departments' offsets
  (``_versions_of``).

insights.py says why the documents are shaped so (FerretDB's costs).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from services.recognition.points.store import person_bucket, person_field
from shared.vocabulary import Period, values

PERIODS = values(Period)
# Histogram bins of business hours: upper bounds. A median or p90 is the upper bound of the bin
# it falls in (within a quarter of an hour below 1 h, half an hour to 8 h, 2 h to 40 h, ...).
BINS = ([0.25, 0.5, 0.75, 1.0] + [1.0 + 0.5 * i for i in range(1, 15)] + [8.0 + 2 * i for i in range(1, 17)]
        + [40.0 + 10 * i for i in range(1, 17)] + [float("inf")])
INSIGHTS_BUCKETS = 256  # people's documents per period (an admin's read of the company reads them all)


def bin_of(hours: float) -> int:
    for i, bound in enumerate(BINS):
        if hours <= bound:
            return i
    return len(BINS) - 1


def quantile(histogram: dict[str, int], q: float) -> float | None:
    """The upper bound of the bin holding the ``q`` quantile; None without values."""
    counts = sorted((int(k), n) for k, n in (histogram or {}).items() if n)
    total = sum(n for _, n in counts)
    if not total:
        return None
    seen = 0
    for index, n in counts:
        seen += n
        if seen >= q * total:
            bound = BINS[index]
            return None if bound == float("inf") else bound
    return None


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """A new document from update paths (``"u1.ack.3": 1`` -> ``{"u1": {"ack": {"3": 1}}}``)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        target = out
        for name in parents:
            target = target.setdefault(name, {})
        target[leaf] = value
    return out

class Marks(NamedTuple):
    """What a document has taken: the last offset per source partition (``o``), and per person
    the offsets their own document had in an older store (``l``, from ``Insights.upgrade``)."""
    offsets: dict[str, int]
    legacy: dict[str, dict[str, int]]


Touch = tuple[str, int, "str | None", dict, dict]  # source, offset, person field or None, increments, sets
BUCKET_FIELDS = ("_id", "o", "l", "v")  # a people's document's own fields; every other one is a person


def _packed(person: dict[str, Any]) -> str:
    # orjson: a busy batch packs thousands of people (the json module took a sixth of insights' time).
    return orjson.dumps(person, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def _unpacked(value: Any) -> dict[str, Any]:
    """A person's fields in their bucket: a JSON string, or fields (a store from before them)."""
    if isinstance(value, str):
        return orjson.loads(value)
    return value or {}


@dataclass
class _People:
    """A people's document as read or written: its version (None: from before versions), its
    offsets and each person's fields as JSON."""
    version: int | None
    marks: Marks
    people: dict[str, str]

    @classmethod
    def of(cls, doc: dict) -> "_People":
        return cls(doc.get("v"), Marks(doc.get("o") or {}, doc.get("l") or {}),
                   {k: v if isinstance(v, str) else _packed(v or {}) for k, v in doc.items() if k not in BUCKET_FIELDS})

    def after(self, taken: dict[str, int], strings: dict[str, str]) -> "_People":
        return _People((self.version or 0) + 1, Marks({**self.marks.offsets, **taken}, self.marks.legacy),
                       {**self.people, **strings})


NO_PEOPLE = _People(0, Marks({}, {}), {})  # a people's document not stored yet


def _marks_of(doc: dict) -> Marks:
    """A department's document's offsets (``o``), and its people's own from an older store (``l``)."""
    return Marks(dict(doc.get("o") or {}), doc.get("l") or {})


def _base_marks(base: "Marks | _People | None") -> Marks:
    """The offsets of a document as read: a department's marks, a people's document's, none."""
    if base is None:
        return Marks({}, {})
    return base.marks if isinstance(base, _People) else base


def _condition(marks: Marks, taken: dict[str, int]) -> dict[str, Any]:
    """The offsets the document had for the sources a write moves (none: not there)."""
    return {f"o.{s}": marks.offsets[s] if s in marks.offsets else {"$exists": False} for s in taken}


class _Change(NamedTuple):
    """Events of one document beyond its offsets, added up: the last and first offset taken per
    source, and the update paths they add to (``inc``) and set."""
    taken: dict[str, int]
    first: dict[str, int]
    inc: dict[str, int]
    sets: dict[str, Any]


@dataclass
class _Held:
    """A document's events added and not yet written (insights.Insights.add): its changes added
    up, the first and last offset held per source, and the document as it was read (``base``:
    a department's Marks or a people's _People; None: not stored then), which the write is
    conditional on."""
    base: Any
    first: dict[str, int]
    taken: dict[str, int]
    inc: dict[str, int]
    sets: dict[str, Any]

    def add(self, change: _Change) -> None:
        for source, offset in change.first.items():
            self.first.setdefault(source, offset)  # later events of a source come after the held ones
        self.taken.update(change.taken)
        for path, n in change.inc.items():
            self.inc[path] = self.inc.get(path, 0) + n
        self.sets.update(change.sets)

    def offsets(self) -> dict[str, int]:
        """The new offsets, as update paths (``o.<topic>|<partition>``)."""
        return {f"o.{s}": o for s, o in self.taken.items()}

    def update(self) -> dict[str, Any]:
        """The update of a department's document: the counters, the sets and the new offsets."""
        update: dict[str, Any] = {"$set": {**self.sets, **self.offsets()}}
        if self.inc:
            update["$inc"] = dict(self.inc)
        return update

    def fields(self) -> dict[str, Any]:
        """A new department's document's fields (as update paths)."""
        return {**self.offsets(), **self.sets, **self.inc}


def _strings(state: "_People | None", held: _Held) -> dict[str, str]:
    """Each person the held events touch, as their new JSON string: their fields in ``state``
    (a people's document as read; None: not stored) with the held paths (``<person>.<field>...``)
    added or set."""
    stored = state.people if state is not None else {}
    touched: dict[str, dict[str, Any]] = {}
    for paths, adds in ((held.inc, True), (held.sets, False)):
        for path, value in paths.items():
            who, rest = path.split(".", 1)
            if who not in touched:
                touched[who] = orjson.loads(stored[who]) if who in stored else {}
            *parents, leaf = rest.split(".")
            target = touched[who]
            for name in parents:
                target = target.setdefault(name, {})
            target[leaf] = target.get(leaf, 0) + value if adds else value
    return {who: _packed(person) for who, person in touched.items()}


def _new_people_doc(doc_id: str, taken: dict[str, int], strings: dict[str, str]) -> dict[str, Any]:
    """A people's document inserted by its first change."""
    return {"_id": doc_id, "v": 1, "o": dict(taken), **strings}


def _keep(cache: OrderedDict, key: str, value: Any, limit: int) -> None:
    """Put ``value`` in an in-memory cache as the newest, dropping the oldest beyond ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _people_write(doc_id: str, state: _People, change: tuple[dict[str, int], dict[str, str]]) -> tuple[dict, dict]:
    """The conditional update of a people's document: on the version read."""
    taken, strings = change
    version = state.version if state.version is not None else {"$exists": False}
    return ({"_id": doc_id, "v": version},
            {"$set": {**strings, **{f"o.{s}": o for s, o in taken.items()}}, "$inc": {"v": 1}})


def _person_key(person_id: str) -> str:
    """A person's field in their bucket's document: their id as a field name, never one of the
    bucket's own fields (``BUCKET_FIELDS``: a ``%`` first, which no escaped id starts with)."""
    field = person_field(person_id)
    return f"%{field}" if field in BUCKET_FIELDS else field


def _person_doc(person_id: str, key: str) -> str:
    """The document of a person's bucket for a period key (``pb:<bucket>:<key>``)."""
    return f"pb:{person_bucket(person_id, INSIGHTS_BUCKETS)}:{key}"


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _versions_of(doc: dict | None) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """A versions document's buckets with their versions, and departments with their offsets:
    its string ``s``, or the map ``v`` of buckets of a store from before."""
    if not doc:
        return {}, {}
    if "s" in doc:
        parsed = orjson.loads(doc["s"])
        return parsed.get("b") or {}, parsed.get("d") or {}
    return {bucket: int(n) for bucket, n in (doc.get("v") or {}).items()}, {}

