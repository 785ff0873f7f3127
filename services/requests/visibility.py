"""Who may see a support request, and which lists answer a person's query (issue 19).

A request -- every field and its timeline -- is visible to its requester, its assignees, the
people who work the queue it is in (support staff and managers of its department:
``domain.works_queue``), the requester's managers up the chain, and admins. To anyone else it
does not exist: a read, a command or a ``requestChanged`` subscription answers
``request_not_found`` as for an unknown id, and lists leave it out (docs/security.md).

Lists are read models read by ``_id`` (``readmodels.py``); no read filters the requests
collection, and none reads a company-wide list for someone who may not see all of it. The
lists a query reads are chosen from the caller's rights (:func:`list_page`):

- an admin: the list the filter names (``readmodels.choose_list``), as before;
- a list the caller may see whole -- their own requests, their team's (anyone below them in
  the manager chain), what they are assigned to, the queue they work: that list, as before;
- another person's list (``requester_id``/``assignee_id`` of someone outside the team): that
  person's list, keeping the entries this caller may see (person-sized: read whole);
- anything else (no filter, or a status, priority or another department's queue): a view
  merged from the caller's own lists -- the queue they work (paged from its head: its cost is
  the page), and, read whole, the requester lists of everyone in their team and their own
  assignee list, minus what the queue already holds -- ordered like a queue, by needed-by.

So a rep asking ``requests(first: 100)`` reads their own two lists; their manager reads one
list per person in the team; a pricing analyst reads a page of the pricing queue and their
own lists. The cost is the team's lists and a page, never the company's history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

from services.requests import domain
from services.requests.domain import Person, SupportRequest
from services.requests.readmodels import choose_list
from shared.auth import manages
from shared.clock import utc
from shared.db import find_by_ids
from shared.feeds import FeedStore, page_of


def may_see(actor: Person, request: SupportRequest, people: Mapping[str, Person]) -> bool:
    """The rule, for one request (``people``: the directory by id, for the manager chain)."""
    return (actor.id == request.requester_id or actor.id in request.assignee_ids
            or domain.works_queue(actor, request.department)  # admins too
            or manages(actor.id, request.requester_id, people.get))


def queue_of(actor: Person) -> str | None:
    """The department whose queue ``actor`` works (support staff and managers), if any."""
    return actor.department if actor.role in (domain.Role.SUPPORT.value, domain.Role.MANAGER.value) else None


def list_page(feeds: FeedStore, requests, actor: Person, team: set[str], *, requester_id: str | None = None,
              assignee_id: str | None = None, department: str | None = None, status: str | None = None,
              open_only: bool = False, priority: str | None = None, first: Any = None,
              after: str | None = None) -> dict[str, Any]:
    """A page of the requests ``actor`` may see that match the filter (``team``: the actor and
    everyone below them in the manager chain). ``requests``: the collection, read by ``_id``
    only, for entries written before they carried what this needs."""
    queue = queue_of(actor)
    filters = {"status": status, "open_only": open_only, "priority": priority}
    whole = (actor.is_admin or (requester_id is not None and requester_id in team)
             or (requester_id is None and assignee_id == actor.id)
             or (requester_id is None and assignee_id is None and department is not None and department == queue))
    if whole:
        feed, descending, where = choose_list(requester_id=requester_id, assignee_id=assignee_id,
                                              department=department, **filters)
        return feeds.page(feed, first, after, descending=descending, where=where)

    def sees(data: dict) -> bool:
        return (data.get("d") == queue or actor.id in (data.get("a") or [])
                or data.get("r") in team)

    if requester_id is not None:  # someone else's requests: those this caller helps with
        feed, descending, where = choose_list(requester_id=requester_id, assignee_id=assignee_id,
                                              department=department, **filters)
        keep = _both(where, lambda d: sees({**d, "r": requester_id}))
        return feeds.page(feed, first, after, descending=descending, where=keep)
    matches = _matcher(department, status, open_only, priority)
    if assignee_id is not None:  # someone else's assignments: those this caller may see
        entries = _complete(requests, feeds.entries(f"as:{assignee_id}"))
        return page_of([e for e in entries if matches(e["d"]) and sees(e["d"])], first, after, descending=False)

    # A view merged from the caller's own lists, by needed-by.
    queue_page = None
    if queue is not None and department in (None, queue):
        feed, _, where = choose_list(department=queue, **filters)
        queue_page = feeds.page(feed, first, after, descending=False, where=where)
    mine: dict[str, dict] = {}
    lists = feeds.entries_of([*(f"by:{person_id}" for person_id in sorted(team)), f"as:{actor.id}"])
    for feed, entries in lists.items():
        owner = feed.split(":", 1)[1]
        for entry in _complete(requests, entries, requester=owner if feed.startswith("by:") else None):
            data = entry["d"]
            if entry["i"] in mine or not matches(data) or (queue_page is not None and data.get("d") == queue):
                continue  # another of the caller's lists holds it (or the queue does)
            mine[entry["i"]] = {"i": entry["i"], "t": data["nb"], "d": data}
    if queue_page is None:
        return page_of(mine.values(), first, after, descending=False)
    merged = page_of([*queue_page["entries"], *mine.values()], first, after, descending=False,
                     total=queue_page["total_count"] + len(mine))
    if queue_page["page_info"]["has_next_page"]:
        merged["page_info"]["has_next_page"] = True
    return merged


def _both(first: Callable[[dict], bool] | None, second: Callable[[dict], bool]) -> Callable[[dict], bool]:
    return second if first is None else (lambda d: first(d) and second(d))


def _matcher(department: str | None, status: str | None, open_only: bool,
             priority: str | None) -> Callable[[dict], bool]:
    """The filter on a person list's entry data."""
    def matches(d: dict) -> bool:
        return ((department is None or d.get("d") == department)
                and (d.get("s") == status if status else (not open_only or d.get("s") in domain.OPEN))
                and (priority is None or d.get("p") == priority))
    return matches


_DOC_FIELDS = {"requester_id": 1, "needed_by": 1, "assignee_ids": 1, "department": 1, "status": 1, "priority": 1}


def _complete(requests, entries: list[dict], requester: str | None = None) -> list[dict]:
    """Entries of a person list with their data as this module reads it: ``r`` (requester),
    ``nb`` (needed-by, a time) and the rest. Entries stored before their lists carried ``r``
    and ``n`` are completed from their documents (one ``$in`` by ``_id``); those whose request
    is gone are left out."""
    out, missing = [], []
    for entry in entries:
        data = dict(entry.get("d") or {})
        if requester is not None:
            data["r"] = requester
        else:
            data.setdefault("r", None)
        if requester is None:  # an assignee list: its time is the needed-by
            data["nb"] = entry["t"]
        elif data.get("n"):
            data["nb"] = datetime.fromisoformat(data["n"])
        if "nb" not in data or data["r"] is None:
            missing.append(entry["i"])
        out.append({**entry, "d": data})
    if not missing:
        return out
    docs = find_by_ids(requests, missing, _DOC_FIELDS)
    completed = []
    for entry in out:
        data = entry["d"]
        if "nb" in data and data["r"] is not None:
            completed.append(entry)
            continue
        doc = docs.get(entry["i"])
        if doc is None:
            continue
        data.update(r=doc.get("requester_id"), nb=utc(doc["needed_by"]), a=list(doc.get("assignee_ids") or []),
                    d=doc.get("department"), s=doc.get("status"), p=doc.get("priority"))
        completed.append(entry)
    return completed
