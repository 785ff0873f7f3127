"""Internal JSON API of the requests service: parse -> handler -> JSON.

Callers (the gateway, the CLI) send ``X-Internal-Token`` and ``X-Actor-Id``; the handlers
decide what that actor may do. Errors use the one shape from ``shared.errors``.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from services.requests import domain
from services.requests.domain import Person, SupportRequest
from services.requests.handlers import RequestsService
from services.requests.readmodels import request_view
from services.requests.visibility import list_page
from shared.auth import reads_as_public
from shared.clock import NotAnInstant, instant_from_iso
from shared.errors import BadInput, NotFound
from shared.feeds import page_of
from shared.web import csv_body, json_body, line_offset

people_api = Blueprint("people", __name__)
requests_api = Blueprint("requests", __name__)


def _service() -> RequestsService:
    return current_app.extensions["requests_service"]


def _actor() -> str | None:
    return g.get("actor_id")


def person_json(person: Person) -> dict[str, Any]:
    return asdict(person)


def request_json(r: SupportRequest, timeline: bool = True) -> dict[str, Any]:
    out = request_view(r)
    if timeline:
        out["timeline"] = [
            {"id": e.id, "at": e.at.isoformat(), "actor_id": e.actor_id, "type": e.type, "text": e.text, "data": e.data}
            for e in r.timeline
        ]
    return out


def _page_json(page: dict, render) -> dict[str, Any]:
    return {
        "items": [render(doc) for doc in page["items"]],
        "cursors": page["cursors"],
        "page_info": page["page_info"],
        "total_count": page["total_count"],
    }


def _arg_choice(name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.args.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise BadInput(f"invalid_{name}", f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


# -- people ----------------------------------------------------------------------------------------

@people_api.get("/people")
def list_people():
    service = _service()
    service.actor(_actor())
    department = _arg_choice("department", domain.DEPARTMENTS)
    role = _arg_choice("role", domain.ROLES)
    active = {"true": True, "false": False}.get(request.args.get("active") or "")
    search = (request.args.get("search") or "").strip().lower()
    if len(search) > 100:
        raise BadInput("search_too_long", "search at most 100 characters", field="search")
    # From this process's copy of the directory (fresh: one counter read by _id), never a scan.
    page = service.repo.directory.page(request.args.get("first"), request.args.get("after"), department=department,
                                       role=role, active=active, search=search)
    return jsonify(_page_json(page, person_json))


@people_api.get("/people/<person_id>")
def get_person(person_id: str):
    service = _service()
    service.actor(_actor())
    person = service.repo.person(person_id)
    if person is None:
        raise NotFound("person_not_found", f"no person {person_id!r}")
    return jsonify(person_json(person))


@people_api.post("/people/lookup")
def lookup_people():
    """Many people by id in one call (the gateway batches its lookups through this)."""
    service = _service()
    service.actor(_actor())
    ids = json_body().get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 500:
        raise BadInput("invalid_ids", "ids must be a list of at most 500 person ids", field="ids")
    found = service.repo.people_by_ids(ids)
    return jsonify({"people": [person_json(found[i]) for i in dict.fromkeys(ids) if i in found]})


@people_api.post("/people")
def upsert_person():
    person, created = _service().upsert_person(_actor(), json_body())
    return jsonify(person_json(person)), 201 if created else 200


@people_api.post("/people/<person_id>/deactivate")
def deactivate_person(person_id: str):
    return jsonify(person_json(_service().deactivate_person(_actor(), person_id)))


@people_api.post("/people/<person_id>/leaderboard-visibility")
def set_leaderboard_visibility(person_id: str):
    """The person's own "keep me off the leaderboards" setting (``{"visible": bool}``); only
    the person themselves may change it (``403 own_setting_only`` for anyone else)."""
    return jsonify(person_json(_service().set_leaderboard_visibility(_actor(), person_id, json_body().get("visible"))))


@people_api.post("/people/admin")
def ensure_admin():
    """The configured admin (created on an empty directory): for tools holding the internal
    token (``insidetrack import-people``) that then act as the admin."""
    email = current_app.extensions.get("requests_admin_email")
    if not email:
        raise NotFound("no_admin", "this service has no configured admin")
    return jsonify(person_json(_service().ensure_admin(email)))


@people_api.post("/people/import")
def import_people():
    return jsonify(_service().import_people(_actor(), csv_body()))


# -- requests --------------------------------------------------------------------------------------

def _parse_time(value: Any, field: str) -> datetime:
    try:
        return instant_from_iso(value)
    except NotAnInstant as exc:
        raise BadInput(f"invalid_{field}", {"not_text": f"{field} must be an ISO 8601 date-time with a timezone",
                                            "not_iso": f"{field} {value!r} is not an ISO 8601 date-time",
                                            "no_timezone": f"{field} needs a timezone (e.g. Z or +01:00)"}[exc.reason],
                       field=field) from None


@requests_api.post("/requests")
def submit_request():
    body = json_body()
    if "needed_by" in body and body["needed_by"] is not None:
        body["needed_by"] = _parse_time(body["needed_by"], "needed_by")
    return jsonify(request_json(_service().submit(_actor(), body))), 201


@requests_api.post("/requests/import")
def import_requests():
    """Request history from CSV (admin only; ``services/requests/history.py``): the body is the
    CSV text, or JSON ``{"csv": ...}``. ``?line_offset=N`` is added to the reported line
    numbers (a part of a bigger file); ``?actor_email=`` names the admin when the caller (the
    command line) has no person id."""
    return jsonify(_service().import_history(_actor(), csv_body(), line_offset(), request.args.get("actor_email")))


@requests_api.get("/requests/<request_id>")
def get_request(request_id: str):
    found = request_json(_service().get(_actor(), request_id, public=reads_as_public()))
    return jsonify(_with_people(found, [found["requester_id"], *found["assignee_ids"],
                                        *(e["actor_id"] for e in found["timeline"])]))


@requests_api.get("/requests")
def list_requests():
    """A rep's requests (``requester_id``, newest first), a queue (``department``, by
    needed-by), ...: of the requests the caller may see (``visibility.py``)."""
    service = _service()
    actor = service.actor(_actor())
    status = _arg_choice("status", domain.STATUSES)
    priority = _arg_choice("priority", domain.PRIORITIES)
    department = _arg_choice("department", domain.DEPARTMENTS)
    # Lists kept by the write path (readmodels.py), read by _id, chosen from the caller's rights;
    # none to the public (a screen): requests are between the people the rules name.
    page = page_of([], request.args.get("first")) if reads_as_public() else list_page(service.repo.read_models.feeds, service.repo.requests, actor, service.team(actor),
                     requester_id=request.args.get("requester_id") or None,
                     assignee_id=request.args.get("assignee_id") or None, department=department, status=status,
                     open_only=request.args.get("open") == "true", priority=priority,
                     first=request.args.get("first"), after=request.args.get("after"))
    # The page's cards (readmodels.py), not the requests: a card is one value to decode.
    page = {**page, "items": service.repo.read_models.cards_of(page["ids"])}
    return jsonify(_with_people(_page_json(page, lambda card: card),
                                [pid for card in page["items"] for pid in [card["requester_id"], *card["assignee_ids"]]]))


def _with_people(answer: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """With ``?people=true``, the answer carries the people it names (``/people/lookup``'s
    shape, from the directory copy): the gateway shows a page's requesters and assignees
    without a second call."""
    if request.args.get("people") == "true":
        found = _service().repo.people_by_ids(dict.fromkeys(ids))
        answer["people"] = [person_json(person) for person in found.values()]
    return answer


def _command(name: str, call):
    def view(request_id: str):
        body = json_body() if request.content_length else {}
        return jsonify(request_json(call(_service(), _actor(), request_id, body)))

    view.__name__ = f"command_{name.replace('-', '_')}"
    requests_api.add_url_rule(f"/requests/<request_id>/{name}", view_func=view, methods=["POST"])


_command("acknowledge", lambda s, a, r, b: s.acknowledge(a, r))
_command("assign", lambda s, a, r, b: s.assign(a, r, b.get("assignee_ids")))
_command("start", lambda s, a, r, b: s.start(a, r))
_command("request-info", lambda s, a, r, b: s.request_info(a, r, b.get("question")))
_command("provide-info", lambda s, a, r, b: s.provide_info(a, r, b.get("answer")))
_command("deal-updates", lambda s, a, r, b: s.post_deal_update(a, r, b.get("text")))
_command("comments", lambda s, a, r, b: s.comment(a, r, b.get("text")))
_command("deliver", lambda s, a, r, b: s.deliver(a, r, b.get("note")))
_command("close", lambda s, a, r, b: s.close(a, r, b.get("outcome"), b.get("note")))
_command("cancel", lambda s, a, r, b: s.cancel(a, r, b.get("reason")))
