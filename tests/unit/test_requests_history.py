"""Request history import, the pure part (services/requests/history.py): each CSV row replayed
through the domain at its own times, refusals by line and column, ids from the content; and
the shared cutting of a file into parts (shared/csvimport.py).

Dates: Europe/Amsterdam (CET = UTC+1 in March), business hours Mon-Fri 09:00-17:00.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from services.requests.domain import Person
from services.requests.history import CSV_COLUMNS, parse_csv
from shared.calendar import BusinessCalendar
from shared.config import load_settings
from shared.csvimport import file_parts
from shared.errors import BadInput

CAL = BusinessCalendar.from_settings(load_settings(env={}))
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "requests.csv"
DETAILS = "Three-year renewal, 500 seats, volume tiers and a ramp in year one; the CFO wants two options."
PEOPLE = {p.email: p for p in [
    Person("rita", "rita@example.com", "Rita", "rep", "sales"),
    Person("pia", "pia@example.com", "Pia", "support", "pricing"),
    Person("li", "li@example.com", "Li", "support", "pricing", active=False),  # has left since
    Person("mo", "mo@example.com", "Mo", "manager", "pricing"),
    Person("ahmed", "ahmed@example.com", "Ahmed", "support", "legal"),
]}


def row(**cells) -> dict:
    base = {"submitted_at": "2026-03-02T09:30:00+01:00", "requester_email": "rita@example.com", "kind": "pricing",
            "title": "Price Acme", "details": DETAILS, "customer": "Acme", "needed_by": "2026-03-06T17:00:00+01:00",
            "commitment": "Proposal by Friday"}
    return {**base, **cells}


def done(**cells) -> dict:
    """A request worked to the end by Pía: acknowledged, started, delivered, closed (won)."""
    return row(**{"assignee_emails": "pia@example.com", "acknowledged_at": "2026-03-02T10:00:00+01:00",
                  "started_at": "2026-03-02T11:00:00+01:00", "delivered_at": "2026-03-04T15:00:00+01:00",
                  "closed_at": "2026-03-05T10:00:00+01:00", "outcome": "won", **cells})


def to_csv(*rows: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def parse(*rows: dict, now: datetime = NOW, offset: int = 0):
    return parse_csv(to_csv(*rows), PEOPLE, CAL, now, offset)


def test_a_whole_life_is_replayed_by_the_people_who_did_it_at_its_own_times():
    (imported,), errors = parse(done(info_requested_at="2026-03-02T14:00:00+01:00", info_question="EUR?",
                                     info_answered_at="2026-03-02T15:30:00+01:00", info_answer="EUR",
                                     deal_update_at="2026-03-03T09:00:00+01:00", deal_update="Procurement joined",
                                     close_note="Signed!"))
    assert errors == []
    r = imported.request
    assert (r.status, r.outcome, r.assignee_ids, r.brief_complete, r.number) == ("closed", "won", ["pia"], True, 0)
    assert [(e.type, e.actor_id) for e in r.timeline] == [
        ("submitted", "rita"), ("acknowledged", "pia"), ("started", "pia"), ("info_requested", "pia"),
        ("info_provided", "rita"), ("deal_updated", "rita"), ("delivered", "pia"), ("closed", "rita")]
    assert r.timeline[3].text == "EUR?" and r.timeline[-1].text == "Signed!"
    assert r.version == 8  # one write per command, as live
    assert r.submitted_at == datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)
    assert r.acknowledged_at == datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    # Every event at its own time (envelope and data), as the live command would have stamped it.
    assert [e.type for e in imported.events] == [f"request.{e.type}" for e in r.timeline]
    for event, entry in zip(imported.events, r.timeline):
        assert event.time == entry.at == datetime.fromisoformat(event.data["at"]) and event.subject == r.id
    by_type = {e.type: e.data for e in imported.events}
    assert by_type["request.acknowledged"]["business_hours_since_submitted"] == 0.5
    assert by_type["request.info_provided"]["business_hours_to_answer"] == 1.5
    assert by_type["request.delivered"]["on_time"] is True
    assert by_type["request.closed"]["business_hours_since_delivered"] == 3.0  # Wed 15:00 -> Thu 10:00
    assert r.new_events == [] and r.new_entries == []


def test_timers_fire_as_the_sweeper_would_have_before_each_step_and_until_the_import():
    (late, still_open), errors = parse(
        done(needed_by="2026-03-03T17:00:00+01:00", delivered_at="2026-03-20T15:00:00+01:00",
             closed_at="2026-03-25T10:00:00+01:00"),
        row(submitted_at="2026-11-23T10:00:00+01:00", needed_by="2026-11-30T17:00:00+01:00"))
    assert errors == []
    timers = [(e.type, e.at, e.data["occurrence"]) for e in late.request.timeline if e.actor_id == "system"]
    assert timers == [("overdue", datetime(2026, 3, 3, 16, tzinfo=timezone.utc), 1),
                      ("update_due", datetime(2026, 3, 9, 8, 30, tzinfo=timezone.utc), 1),  # 5 business days
                      ("update_due", datetime(2026, 3, 16, 8, 30, tzinfo=timezone.utc), 2)]
    events = [e for e in late.events if e.type in ("request.overdue", "request.update_due")]
    assert [e.time for e in events] == [at for _, at, _ in timers]
    assert late.request.timeline[-2].type == "delivered" and late.request.version == 5 + 3
    assert next(e for e in late.events if e.type == "request.delivered").data["on_time"] is False
    # Still open at the import: nothing was due yet; its timers are the sweeper's, ahead.
    r = still_open.request
    assert r.status == "submitted" and [e.type for e in r.timeline] == ["submitted"]
    assert r.overdue_at == datetime(2026, 11, 30, 16, tzinfo=timezone.utc) and r.update_due_at > NOW


def test_more_assignees_a_manager_and_people_who_left_since():
    (two, managed), errors = parse(
        done(assignee_emails="pia@example.com;li@example.com"),
        done(assignee_emails="mo@example.com", title="Managed"))
    assert errors == []
    assert [e.type for e in two.request.timeline][:3] == ["submitted", "acknowledged", "assigned"]
    assert two.request.assignee_ids == ["pia", "li"]  # Li has left since: she worked it then
    assert managed.request.assignee_ids == ["mo"] and managed.request.timeline[2].actor_id == "mo"
    (assigned,), _ = parse(row(assignee_emails="pia@example.com", title="Not yet acknowledged"))
    assert [(e.type, e.actor_id) for e in assigned.request.timeline][:2] == [("submitted", "rita"), ("assigned", "pia")]
    # Open since March: overdue once, then a reminder every 5 business days until the import.
    timers = [e.type for e in assigned.request.timeline[2:]]
    assert timers[0] == "overdue" and set(timers[1:]) == {"update_due"} and len(timers) == 1 + 38


def test_cancelled_and_rush_rows():
    (cancelled, rush), errors = parse(
        row(assignee_emails="pia@example.com", acknowledged_at="2026-03-02T10:00:00+01:00",
            cancelled_at="2026-03-02T11:00:00+01:00", cancel_reason="Budget frozen"),
        row(priority="RUSH", rush_reason="Board meets tomorrow", needed_by="2026-03-03T12:00:00+01:00", title="Rush"))
    assert errors == []
    assert cancelled.request.status == "cancelled" and cancelled.request.timeline[-1].actor_id == "rita"
    assert cancelled.request.timeline[-1].text == "Budget frozen"
    assert rush.request.priority == "rush" and rush.request.brief_complete is True


def test_rows_the_domain_or_the_import_refuses_are_reported_by_line_and_column():
    rows = [
        done(),                                                                              # 2: good
        done(started_at="2026-03-02T09:00:00+01:00"),                                        # 3
        row(started_at="2026-03-02T11:00:00+01:00"),                                         # 4
        row(submitted_at="2027-01-04T09:00:00+01:00", needed_by="2027-01-08T09:00:00+01:00"),  # 5
        row(requester_email="nobody@example.com"),                                           # 6
        row(requester_email="pia@example.com"),                                              # 7
        done(assignee_emails="rita@example.com"),                                            # 8
        done(assignee_emails="pia@example.com;ghost@example.com"),                           # 9
        row(priority="rush"),                                                                # 10
        done(outcome=""),                                                                    # 11
        row(outcome="won"),                                                                  # 12
        done(cancelled_at="2026-03-06T10:00:00+01:00", cancel_reason="Too late"),            # 13
        row(submitted_at="yesterday"),                                                       # 14
        row(needed_by="2026-03-02T09:00:00+01:00"),                                          # 15
        row(deal_value="lots"),                                                              # 16
        row(acknowledged_at="2026-03-02T10:00:00+01:00"),                                    # 17
        done(info_requested_at="2026-03-02T12:00:00+01:00"),                                 # 18
        done(delivered_at="2026-03-02T10:30:00+01:00"),                                      # 19
        done(info_requested_at="2026-03-02T12:00:00+01:00", info_question="EUR?"),           # 20
        row(kind="catering"),                                                                # 21
    ]
    good, errors = parse(*rows, offset=100)
    assert [g.line for g in good] == [102]
    assert [(e["line"], e["field"], e["code"]) for e in errors] == [
        (103, "started_at", "out_of_order"),
        (104, "acknowledged_at", "missing_acknowledged_at"),
        (105, "submitted_at", "submitted_at_in_future"),
        (106, "requester_email", "unknown_requester"),
        (107, "requester_email", "not_a_rep"),
        (108, "assignee_emails", "not_in_queue"),
        (109, "assignee_emails", "unknown_assignee"),
        (110, "rush_reason", "rush_needs_reason"),
        (111, "outcome", "invalid_outcome"),
        (112, "closed_at", "missing_closed_at"),
        (113, "cancelled_at", "illegal_transition"),
        (114, "submitted_at", "invalid_submitted_at"),
        (115, "needed_by", "needed_by_in_past"),
        (116, "deal_value", "invalid_deal_value"),
        (117, "assignee_emails", "missing_assignee_emails"),
        (118, "info_question", "missing_question"),
        (119, "delivered_at", "out_of_order"),
        (120, "delivered_at", "illegal_transition"),  # still waiting on Rita's answer
        (121, "kind", "invalid_kind"),
    ]
    assert all(e["message"] for e in errors)
    assert "started_at 2026-03-02T09:00:00+01:00 is before acknowledged_at" in errors[0]["message"]


def test_a_bad_file_is_refused_whole():
    with pytest.raises(BadInput) as exc:
        parse_csv("when,who\n", PEOPLE, CAL, NOW)
    assert exc.value.code == "bad_csv_header"
    with pytest.raises(BadInput) as exc:
        parse_csv("submitted_at,requester_email\n", PEOPLE, CAL, NOW)
    assert exc.value.code == "bad_csv_header" and "kind" in exc.value.message
    with pytest.raises(BadInput) as exc:
        parse_csv("", PEOPLE, CAL, NOW)
    assert exc.value.code == "empty_csv"


def test_any_line_ending_reads_the_same_and_an_unreadable_file_gets_a_clear_refusal():
    import csv

    from shared.csvimport import parse_rows

    columns = ("a", "b")

    def parse(text: str):
        return parse_rows(text, columns, columns, 10, 0, lambda line, raw: (line, raw["a"], raw["b"]))

    # Unix, Windows and old Mac line endings: the same rows at the same lines.
    assert parse("a,b\n1,x\n2,y\n") == parse("a,b\r\n1,x\r\n2,y\r\n") == parse("a,b\r1,x\r2,y\r") == (
        [(2, "1", "x"), (3, "2", "y")], [])
    with pytest.raises(BadInput) as exc:  # the header itself: not the columns asked for
        parse("\u3574\xd5\xd4uz\r\xcd")
    assert exc.value.code == "bad_csv_header"
    # A cell the csv module will not read (longer than its limit): the line, and nothing taken.
    with pytest.raises(BadInput) as exc:
        parse("a,b\n1,x\n2," + "y" * (csv.field_size_limit() + 1) + "\n")
    assert exc.value.code == "unreadable_csv" and exc.value.message.startswith("line 3:") and exc.value.field == "csv"


def test_ids_depend_on_the_content_only():
    (first,), _ = parse(done())
    (same,), _ = parse(done(submitted_at="2026-03-02T08:30:00Z", requester_email="Rita@Example.com"))
    (edited,), _ = parse(done(title="Price Acme!"))
    assert first.request.id == same.request.id and first.request.id.startswith("r_i")
    assert edited.request.id != first.request.id


def test_the_example_file_imports_all_but_its_bad_row():
    people = {}
    with EXAMPLE.with_name("people.csv").open(encoding="utf-8") as file:
        for r in csv.DictReader(file):
            if "@" in r["email"]:
                people[r["email"]] = Person(r["email"].split(".")[0], r["email"], r["name"], r["role"], r["department"])
    good, errors = parse_csv(EXAMPLE.read_text(encoding="utf-8"), people, CAL, NOW)
    assert [(e["line"], e["code"]) for e in errors] == [(6, "out_of_order")]
    assert [g.request.status for g in good] == ["closed", "closed", "cancelled", "delivered"]
    assert "info_requested" in [e.type for e in good[0].request.timeline]


def test_a_file_is_cut_in_parts_by_rows_and_by_bytes_keeping_its_line_numbers():
    text = "a,b\n" + "".join(f'{i},"two\nlines"\n' for i in range(10))  # each record 2 lines, 14 bytes
    by_rows = file_parts(text, rows_per_part=4)
    assert [offset for _, offset in by_rows] == [0, 8, 16]
    by_bytes = file_parts(text, rows_per_part=100, max_bytes=4 + 3 * 14)
    assert [offset for _, offset in by_bytes] == [0, 6, 12, 18]
    assert all(len(part.encode()) <= 46 and part.startswith("a,b\n") for part, _ in by_bytes)
    assert "".join(part[4:] for part, _ in by_bytes) == text[4:]
    assert file_parts("a,b\n") == [("a,b\n", 0)]
    assert len(file_parts("a,b\n" + "x" * 100 + ",y\n", max_bytes=10)) == 1  # a record bigger than a part: alone


def test_deal_value_needs_no_currency_and_may_be_empty():
    (valued, empty), _ = parse(row(deal_value="1250.50"), row(title="No value"))
    assert valued.request.deal_value == 1250.5 and empty.request.deal_value is None
    assert valued.request.needed_by - valued.request.submitted_at == timedelta(days=4, hours=7, minutes=30)
