"""The intranet portal at ``/portal``: plain ES modules in ``static/portal/`` (no build step,
nothing from outside), talking to the public GraphQL API only, like any other client.

Sign-in: the portal reads a token from its link's fragment (``/portal#token=<JWT>``, never
sent to a server or written to its logs), keeps it in the tab's session storage and sends it
as ``Authorization: Bearer``. ``insidetrack token EMAIL --portal`` prints such a link; a
company's single sign-on hands the portal a token the same way (docs/operations.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response, current_app, redirect

from shared.calendar import BusinessCalendar
from shared.clock import clock_for
from shared.vocabulary import BRIEF_MIN_DETAILS, BRIEF_MIN_NOTICE_DAYS

PORTAL_PATH = "/portal"
portal = Blueprint("portal", __name__)


def portal_link(gateway_url: str, token: str) -> str:
    """The address that opens the portal signed in with ``token``."""
    return f"{gateway_url.rstrip('/')}{PORTAL_PATH}#token={token}"


def portal_config(settings, clock=None) -> dict:
    """What the page needs to know that the API does not say: the company's "now" (the
    services' clock, a demo's simulated one included) and what makes a brief complete, so the
    New request page shows a brief's gaps while the rep types (the requests service decides
    at submission)."""
    calendar = BusinessCalendar.from_settings(settings)
    now = (clock or clock_for(settings)).now()
    return {"now": now.isoformat(), "timezone": settings.company_timezone,
            "brief": {"minDetails": BRIEF_MIN_DETAILS, "minNoticeDays": BRIEF_MIN_NOTICE_DAYS,
                      "completeFrom": calendar.add_business_days(now, BRIEF_MIN_NOTICE_DAYS).isoformat()}}


@portal.get(PORTAL_PATH)
def portal_page():
    page = (Path(current_app.root_path) / "static" / "portal" / "index.html").read_text(encoding="utf-8")
    config = json.dumps(portal_config(current_app.config["SETTINGS"])).replace("</", "<\\/")
    page = page.replace("<!--PORTAL_CONFIG-->", f"<script>window.PORTAL_CONFIG = {config};</script>")
    return Response(page, mimetype="text/html", headers={"Cache-Control": "no-store"})


@portal.get(PORTAL_PATH + "/")
def portal_slash():
    return redirect(PORTAL_PATH, code=308)
