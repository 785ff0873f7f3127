"""Internal JSON API of the kudos process, and the public card images.

Commands and reads need ``X-Internal-Token`` and ``X-Actor-Id`` (from the gateway). Cards
(``/cards/<id>.png``, ``/cards/<id>.thumb.png``) are public: anyone with the link can open
them, with ETag, Cache-Control and 304 answers; a private kudos's card only with the link
given to those who may see it (``?s=``, a signature of its id).

``public=true`` on a read: answer as to the public (the office screen): no private kudos.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from services.recognition.kudos.cards import CardStore
from services.recognition.kudos.domain import Kudos
from services.recognition.kudos.handlers import KudosService
from shared.auth import caller, reads_as_public, sees_private
from shared import idempotency
from shared.errors import BadInput, Forbidden, NotFound
from shared.memory import release_free_memory
from shared.vocabulary import KudosDirection, values
from shared.web import csv_body, json_body, line_offset

kudos_api = Blueprint("kudos", __name__)
cards_api = Blueprint("cards", __name__)
CARD_CACHE = "public, max-age=86400"


def _service() -> KudosService:
    return current_app.extensions["kudos_service"]


def card_signature(kudos_id: str) -> str:
    """What a private kudos's card link carries: only who may see the kudos is given it."""
    secret = current_app.config["SETTINGS"].internal_token.encode()
    return hmac.new(secret, f"card:{kudos_id}".encode(), hashlib.sha256).hexdigest()[:32]


def kudos_json(k: Kudos, names: dict[str, str] | None = None) -> dict[str, Any]:
    names = names or {}
    sign = f"?s={card_signature(k.id)}" if k.private else ""
    return {
        "id": k.id,
        "giver_id": k.giver_id,
        "giver_name": k.giver_name,
        "recipients": [{"id": i, "name": n} for i, n in zip(k.recipient_ids, k.recipient_names)],
        "recipient_ids": k.recipient_ids,
        "message": k.message,
        "values": k.values,
        "gesture": k.gesture,
        "request_id": k.request_id,
        "created_at": k.created_at.isoformat(),
        "add_ons": [
            {"actor_id": a.actor_id, "name": names.get(a.actor_id), "message": a.message, "at": a.at.isoformat()}
            for a in k.add_ons
        ],
        "add_on_count": len(k.add_ons),
        "private": k.private,
        "card_url": f"/cards/{k.id}.png{sign}",
        "thumbnail_url": f"/cards/{k.id}.thumb.png{sign}",
    }


def _render(kudos: list[Kudos], people: dict | None = None) -> list[dict[str, Any]]:
    """The kudos as JSON; ``people`` (id -> directory person) if the caller read them already."""
    if people is None:
        people = _service().directory.many(a.actor_id for k in kudos for a in k.add_ons)
    names = {i: p.name for i, p in people.items()}
    return [kudos_json(k, names) for k in kudos]


@kudos_api.before_request
def _known_actor():
    """Every call but an import names a known, active person (``shared.auth.caller``); an
    import names its admin by id or, from the command line, by email (checked there)."""
    if request.endpoint != "kudos.import_kudos":
        g.actor = caller(g.get("actor_id"), _service().directory.get)


@kudos_api.post("/kudos")
def give():
    return jsonify(_render([_service().give(g.get("actor_id"), json_body())])[0]), 201


@kudos_api.post("/kudos/<kudos_id>/add-ons")
def add_on(kudos_id: str):
    body = json_body() if request.content_length else {}
    return jsonify(_render([_service().add_on(g.get("actor_id"), kudos_id, body.get("message"),
                                              idempotency.key_of(body))])[0]), 201


@kudos_api.get("/kudos/<kudos_id>")
def get_kudos(kudos_id: str):
    """One kudos; a private one only for who may see it (else ``kudos_not_found``, as for an unknown id)."""
    return jsonify(_render([_service().get(kudos_id, g.actor, public=reads_as_public())])[0])


@kudos_api.get("/kudos")
def feed():
    """The company feed, or one person's kudos (``person_id`` + ``direction`` received|given)."""
    person_id = request.args.get("person_id")
    direction = request.args.get("direction") or KudosDirection.RECEIVED.value
    if direction not in values(KudosDirection):
        raise BadInput("invalid_direction", "direction must be received or given", field="direction")
    # A page of a list kept by the write path, read by _id (feeds.py): its cost is the page.
    kudos, page = _service().feed(person_id, direction, request.args.get("first"), request.args.get("after"),
                                  viewer=None if reads_as_public() else g.actor)
    # Everyone the page names, from the directory copy: a caller showing names needs no second call.
    people = _service().directory.many(pid for k in kudos for pid in [k.giver_id, *k.recipient_ids, *(a.actor_id for a in k.add_ons)])
    return jsonify({"items": _render(kudos, people), "people": [p.as_record() for p in people.values()], "cursors": page["cursors"],
                    "page_info": page["page_info"], "total_count": page["total_count"]})


@kudos_api.post("/kudos/import")
def import_kudos():
    """Kudos history from CSV (admin only): the body is the CSV text, or JSON ``{"csv": ...}``.
    ``?line_offset=N`` is added to the reported line numbers (a part of a bigger file);
    ``?actor_email=`` names the admin when the caller (the command line) has no person id."""
    text, offset = csv_body(), line_offset()
    try:
        return jsonify(_service().import_history(g.get("actor_id"), text, offset, request.args.get("actor_email")))
    finally:
        del text
        release_free_memory()  # the part's peak is not kept as the process's size


@kudos_api.get("/values")
def company_values():
    """The company values a kudos may name (``INSIDETRACK_COMPANY_VALUES``), in their order."""
    return jsonify({"values": list(_service().settings.values)})


@kudos_api.get("/allowance/<person_id>")
def allowance(person_id: str):
    """A person's allowance: for them, their managers up the chain and admins (``private``
    to anyone else: the gateway shows null)."""
    if reads_as_public() or not sees_private(g.actor, person_id, _service().directory.get):
        raise Forbidden("private", "only the person, their managers and admins see their kudos allowance")
    result = _service().allowance(person_id)
    return jsonify({**result, "resets_at": result["resets_at"].isoformat()})


def _card(kudos_id: str, thumbnail: bool) -> Response:
    service = _service()
    try:
        kudos = service.get(kudos_id)
    except NotFound:
        raise NotFound("card_not_found", f"no card for {kudos_id!r}") from None
    if kudos.private and not hmac.compare_digest(request.args.get("s", ""), card_signature(kudos.id)):
        raise NotFound("card_not_found", f"no card for {kudos_id!r}")
    store: CardStore = current_app.extensions["card_store"]
    data, etag = store.get(kudos.id, service.card_data(kudos), thumbnail=thumbnail)
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400" if kudos.private else CARD_CACHE}
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return Response(status=304, headers=headers)
    return Response(data, mimetype="image/png", headers=headers)


@cards_api.get("/cards/<kudos_id>.png")
def card(kudos_id: str):
    if kudos_id.endswith(".thumb"):
        return _card(kudos_id[: -len(".thumb")], thumbnail=True)
    return _card(kudos_id, thumbnail=False)
