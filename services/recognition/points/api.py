"""Internal JSON API of the points process: leaderboards, summaries, ledger history, badges."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from services.recognition.points.queries import PointsQueries
from shared.auth import caller, reads_as_public, sees_private
from shared.errors import Forbidden, Unavailable

points_api = Blueprint("points", __name__)


def _queries() -> PointsQueries:
    return current_app.extensions["points_queries"]


def _table_queries() -> PointsQueries:
    """The queries, for reads of people's points (the points state): not served by a process
    that does not apply awards, which keeps no copy of it (app.py)."""
    if not current_app.extensions["points_table_kept"]:
        raise Unavailable("points_not_kept_here", "this points process does not apply awards (INSIDETRACK_POINTS_STAGES "
                          "has no apply) and keeps no points state: ask a process that applies them")
    return _queries()


@points_api.before_request
def _known_actor():
    """Every call names a known, active person (``shared.auth.caller``)."""
    g.actor = caller(g.get("actor_id"), _queries().directory.get)


@points_api.get("/leaderboard")
def leaderboard():
    """A page of the board; each entry carries its ``person`` from the directory copy (null
    if unknown here), so a caller showing names needs no second call. People who keep
    themselves off the leaderboards are on no page and in no rank; their own ``me`` is
    answered to them alone (not to a screen, not to another caller naming them)."""
    args = request.args
    queries = _table_queries()
    board = queries.leaderboard(
        period=args.get("period", "week"), scope=args.get("scope", "company"), department=args.get("department"),
        role=args.get("role"), first=args.get("first", 10), after=args.get("after"), me=args.get("me") or g.get("actor_id"),
        previous_period=args.get("previous") == "true", viewer=None if reads_as_public() else g.actor.id,
    )
    people = queries.directory.many(e["person_id"] for e in board["entries"])
    for entry in board["entries"]:
        person = people.get(entry["person_id"])
        entry["person"] = person.as_record() if person else None
    return jsonify(board)


@points_api.get("/people/<person_id>/summary")
def summary(person_id: str):
    """Points, ranks and badges (everyone's to see); the rush share only for the person, their
    managers up the chain and admins (null for anyone else); the ranks of a person who keeps
    themselves off the leaderboards only for them (null for anyone else, a screen included)."""
    queries = _table_queries()
    result = queries.summary(person_id, viewer=None if reads_as_public() else g.actor.id)
    if result.get("rush_share") is not None and (reads_as_public() or not sees_private(g.actor, person_id, queries.directory.get)):
        result = {**result, "rush_share": None}
    return jsonify(result)


@points_api.get("/people/<person_id>/ledger")
def ledger(person_id: str):
    args = request.args
    return jsonify(_table_queries().history(person_id, first=args.get("first", 20), after=args.get("after"),
                                      include_zero=args.get("include_zero") == "true"))


@points_api.get("/badges")
def badges():
    return jsonify({"badges": _queries().badge_definitions()})


@points_api.get("/insights")
def insights():
    """Insights for the caller's team (a manager: the people below them; an admin: everyone),
    for the period containing now; ``department`` narrows it (insights.py)."""
    if reads_as_public():
        raise Forbidden("not_a_manager", "insights are for managers and admins, not screens")
    app = current_app.extensions
    args = request.args
    # reps_first / unrecognized_first (and their _after cursors) page the two lists that grow
    # with the team; without them, every rep and person is listed.
    pages = {name: (args.get(f"{name}_first"), args.get(f"{name}_after")) for name in ("reps", "unrecognized")
             if args.get(f"{name}_first") or args.get(f"{name}_after")}
    return jsonify(app["insights"].read(g.actor, args.get("period", "month"), args.get("department"),
                                        app["clock"].now(), pages))
