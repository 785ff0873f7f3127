"""Kudos domain rules (no I/O): parse_give, check_people, check_add_on and clean_text.

Every refusal is checked for its exception class (which fixes the HTTP status), its stable
``code`` and, where the API names one, its ``field``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from services.recognition.person import DirectoryPerson
from services.recognition.kudos.domain import (
    GESTURES,
    MAX_MESSAGE,
    MAX_RECIPIENTS,
    AddOn,
    Kudos,
    KudosInput,
    check_add_on,
    check_people,
    clean_text,
    new_kudos_id,
    parse_give,
)
from services.recognition.kudos.importer import parse_csv
from shared.csvimport import file_parts
from shared.errors import AppError, BadInput, Conflict, Forbidden, RuleViolation, Unauthorized

VALUES = ("customer_first", "teamwork", "ownership")
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)


def give(**changes) -> dict:
    raw = {"to": ["p_ana"], "message": "Thanks for saving the Acme renewal!", "values": ["teamwork"],
           "gesture": "coffee"}
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not _MISSING}


_MISSING = object()


def refused(exc_type: type[AppError], call, *args) -> AppError:
    with pytest.raises(AppError) as info:
        call(*args)
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value.code}"
    return info.value


def person(pid: str, name: str | None = None, active: bool = True) -> DirectoryPerson:
    return DirectoryPerson(id=pid, name=name or pid.removeprefix("p_").title(), email=f"{pid}@example.com",
                           role="seller", department="sales", active=active)


def test_the_constants_match_the_brief():
    assert GESTURES == ("thanks", "coffee", "lunch", "flowers", "high_five")
    assert MAX_MESSAGE == 500
    assert MAX_RECIPIENTS == 10
    assert (BadInput.status, Unauthorized.status, Forbidden.status, Conflict.status, RuleViolation.status) == (
        400, 401, 403, 409, 422)


def test_new_kudos_id_shape():
    a, b = new_kudos_id(), new_kudos_id()
    assert a != b
    assert a.startswith("k_") and len(a) == 18 and int(a[2:], 16) >= 0


# -- parse_give ---------------------------------------------------------------------------------

def test_parse_give_accepts_a_valid_request():
    parsed = parse_give(give(request_id="req_42"), VALUES)
    assert parsed == KudosInput(["p_ana"], "Thanks for saving the Acme renewal!", ["teamwork"], "coffee", "req_42")


@pytest.mark.parametrize(
    "to",
    [_MISSING, None, [], "p_ana", {"p_ana": 1}, ["p_ana", 7], [None], [""], ["p_ana", ""], [["p_ana"]]],
    ids=["missing", "none", "empty", "string", "dict", "int-in-list", "none-in-list", "empty-id",
         "one-empty-id", "nested"],
)
def test_parse_give_rejects_bad_recipients(to):
    err = refused(BadInput, parse_give, give(to=to), VALUES)
    assert (err.code, err.field, err.status) == ("invalid_recipients", "to", 400)


def test_parse_give_collapses_duplicate_recipients_in_order():
    assert parse_give(give(to=["p_bo", "p_ana", "p_bo", "p_ana", "p_cy"]), VALUES).recipient_ids == [
        "p_bo", "p_ana", "p_cy"]


def test_parse_give_allows_ten_recipients_and_refuses_eleven():
    ten = [f"p_{i}" for i in range(10)]
    assert parse_give(give(to=ten), VALUES).recipient_ids == ten
    # Duplicates are collapsed before counting.
    assert parse_give(give(to=ten + ten[:5]), VALUES).recipient_ids == ten
    err = refused(BadInput, parse_give, give(to=ten + ["p_10"]), VALUES)
    assert (err.code, err.field) == ("too_many_recipients", "to")


@pytest.mark.parametrize("message", ["", " ", "  \n\t  ", "\x00\x07\u202e\u200f", "\x1b\x7f\u2066\u2069 \r"],
                         ids=["empty", "space", "whitespace", "controls", "controls-and-space"])
def test_parse_give_rejects_an_empty_message(message):
    err = refused(BadInput, parse_give, give(message=message), VALUES)
    assert (err.code, err.field) == ("empty_message", "message")


@pytest.mark.parametrize("message", [_MISSING, None, 42, ["hi"]], ids=["missing", "none", "int", "list"])
def test_parse_give_rejects_a_message_that_is_not_text(message):
    err = refused(BadInput, parse_give, give(message=message), VALUES)
    assert (err.code, err.field) == ("invalid_message", "message")


def test_parse_give_message_length_limit():
    assert parse_give(give(message="x" * 500), VALUES).message == "x" * 500
    err = refused(BadInput, parse_give, give(message="x" * 501), VALUES)
    assert (err.code, err.field) == ("message_too_long", "message")
    # Counted after cleaning: surrounding spaces and stripped characters do not count...
    assert parse_give(give(message="  " + "x" * 500 + "\u202e  "), VALUES).message == "x" * 500
    # ...and a decomposed accent counts once after NFC.
    assert parse_give(give(message="e\u0301" * 500), VALUES).message == "\u00e9" * 500


def test_parse_give_cleans_the_message():
    parsed = parse_give(give(message="  Great\u202e job\x00!\nSee you \u200fMonday  "), VALUES)
    assert parsed.message == "Great job!\nSee you Monday"


def test_parse_give_values_are_lower_cased_trimmed_and_deduplicated():
    parsed = parse_give(give(values=["Teamwork", " teamwork ", "OWNERSHIP", "teamwork"]), VALUES)
    assert parsed.values == ["teamwork", "ownership"]
    assert parse_give(give(values=_MISSING), VALUES).values == []
    assert parse_give(give(values=None), VALUES).values == []
    assert parse_give(give(values=[]), VALUES).values == []


def test_parse_give_rejects_an_unknown_value():
    err = refused(BadInput, parse_give, give(values=["teamwork", "Synergy"]), VALUES)
    assert (err.code, err.field) == ("unknown_value", "values")
    assert "synergy" in err.message


@pytest.mark.parametrize("values", ["teamwork", ["teamwork", 3], {"teamwork": True}])
def test_parse_give_rejects_values_that_are_not_a_list_of_text(values):
    err = refused(BadInput, parse_give, give(values=values), VALUES)
    assert (err.code, err.field) == ("invalid_values", "values")


def test_parse_give_gesture_defaults_to_thanks_and_is_case_insensitive():
    assert parse_give(give(gesture=_MISSING), VALUES).gesture == "thanks"
    assert parse_give(give(gesture=None), VALUES).gesture == "thanks"
    assert parse_give(give(gesture=""), VALUES).gesture == "thanks"
    assert parse_give(give(gesture="HIGH_FIVE"), VALUES).gesture == "high_five"
    for g in GESTURES:
        assert parse_give(give(gesture=g), VALUES).gesture == g


@pytest.mark.parametrize("gesture", ["hug", "high five", "thanks ", 5, ["coffee"]])
def test_parse_give_rejects_an_unknown_gesture(gesture):
    err = refused(BadInput, parse_give, give(gesture=gesture), VALUES)
    assert (err.code, err.field) == ("unknown_gesture", "gesture")


@pytest.mark.parametrize("request_id", [123, 1.5, ["req_1"], {"id": "req_1"}, True, "", "   ", "r" * 65],
                         ids=["int", "float", "list", "dict", "bool", "empty", "blank", "too-long"])
def test_parse_give_rejects_a_bad_request_id(request_id):
    err = refused(BadInput, parse_give, give(request_id=request_id), VALUES)
    assert (err.code, err.field) == ("invalid_request_id", "request_id")


def test_parse_give_request_id_is_optional():
    assert parse_give(give(), VALUES).request_id is None
    assert parse_give(give(request_id=None), VALUES).request_id is None
    assert parse_give(give(request_id="r" * 64), VALUES).request_id == "r" * 64


# -- check_people ---------------------------------------------------------------------------------

GIVER = person("p_priya", "Priya Raman")
ANA, BO = person("p_ana", "Ana Lopez"), person("p_bo", "Bo Smith")


def test_check_people_accepts_active_people():
    assert check_people(GIVER, "p_priya", {"p_ana": ANA, "p_bo": BO}, ["p_ana", "p_bo"]) is None


def test_check_people_unknown_giver():
    err = refused(Unauthorized, check_people, None, "p_ghost", {"p_ana": ANA}, ["p_ana"])
    assert (err.code, err.status) == ("unknown_actor", 401)
    assert "p_ghost" in err.message


def test_check_people_inactive_giver():
    gone = dataclasses.replace(GIVER, active=False)
    err = refused(Forbidden, check_people, gone, "p_priya", {"p_ana": ANA}, ["p_ana"])
    assert (err.code, err.status) == ("inactive_actor", 403)


def test_check_people_kudos_to_self():
    err = refused(RuleViolation, check_people, GIVER, "p_priya", {"p_ana": ANA, "p_priya": GIVER},
                  ["p_ana", "p_priya"])
    assert (err.code, err.field, err.status) == ("kudos_to_self", "to", 422)


def test_check_people_unknown_recipient():
    err = refused(BadInput, check_people, GIVER, "p_priya", {"p_ana": ANA}, ["p_ana", "p_nobody"])
    assert (err.code, err.field, err.status) == ("unknown_recipient", "to", 400)
    assert "p_nobody" in err.message


def test_check_people_inactive_recipient():
    gone = dataclasses.replace(BO, active=False)
    err = refused(RuleViolation, check_people, GIVER, "p_priya", {"p_ana": ANA, "p_bo": gone}, ["p_ana", "p_bo"])
    assert (err.code, err.field, err.status) == ("inactive_recipient", "to", 422)
    assert "Bo Smith" in err.message


# -- check_add_on ---------------------------------------------------------------------------------

def make_kudos(add_ons: list[AddOn] | None = None) -> Kudos:
    return Kudos(
        id="k_0123456789abcdef", giver_id="p_priya", recipient_ids=["p_ana", "p_bo"],
        message="Thanks!", values=["teamwork"], gesture="thanks", request_id=None, created_at=NOW,
        giver_name="Priya Raman", recipient_names=["Ana Lopez", "Bo Smith"], add_ons=add_ons or [],
    )


CY = person("p_cy", "Cy Cooper")


@pytest.mark.parametrize("actor", [GIVER, ANA, BO], ids=["giver", "recipient-1", "recipient-2"])
def test_check_add_on_refuses_own_kudos(actor):
    err = refused(RuleViolation, check_add_on, make_kudos(), actor, actor.id, "+1")
    assert (err.code, err.status) == ("own_kudos", 422)


def test_check_add_on_refuses_a_second_add_on_by_the_same_person():
    kudos = make_kudos([AddOn("p_cy", None, NOW)])
    err = refused(Conflict, check_add_on, kudos, CY, "p_cy", "again")
    assert (err.code, err.status) == ("already_added_on", 409)
    # Someone else may still add on.
    assert check_add_on(kudos, person("p_di"), "p_di", "Me too") == "Me too"


def test_check_add_on_unknown_or_inactive_actor():
    err = refused(Unauthorized, check_add_on, make_kudos(), None, "p_ghost", "+1")
    assert err.code == "unknown_actor"
    err = refused(Forbidden, check_add_on, make_kudos(), dataclasses.replace(CY, active=False), "p_cy", "+1")
    assert err.code == "inactive_actor"


def test_check_add_on_note_length():
    assert check_add_on(make_kudos(), CY, "p_cy", "y" * 500) == "y" * 500
    err = refused(BadInput, check_add_on, make_kudos(), CY, "p_cy", "y" * 501)
    assert (err.code, err.field) == ("message_too_long", "message")


def test_check_add_on_cleans_the_note():
    assert check_add_on(make_kudos(), CY, "p_cy", "  So\u202e deserved\x00!\u200f  ") == "So deserved!"
    assert check_add_on(make_kudos(), CY, "p_cy", "Cafe\u0301 on me\nnext week") == "Café on me\nnext week"


@pytest.mark.parametrize("note", [None, "", "   ", "\x00\u202e"])
def test_check_add_on_without_a_note(note):
    assert check_add_on(make_kudos(), CY, "p_cy", note) is None


@pytest.mark.parametrize("note", [42, ["+1"], {"text": "+1"}])
def test_check_add_on_note_must_be_text(note):
    err = refused(BadInput, check_add_on, make_kudos(), CY, "p_cy", note)
    assert (err.code, err.field) == ("invalid_message", "message")


# -- clean_text -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("a\u202eb", "ab"),  # right-to-left override
        ("a\u202ab\u202bc\u202cd\u202de", "abcde"),  # embeddings and pop
        ("a\u200eb\u200fc", "abc"),  # LRM, RLM
        ("a\u2066b\u2067c\u2068d\u2069e", "abcde"),  # isolates
        ("a\x00b", "ab"),
        ("a\x07b\x1bc\x7fd\x9fe", "abcde"),
        ("a\r\nb", "a\nb"),
    ],
    ids=["rlo", "embeddings", "marks", "isolates", "nul", "c0-c1", "crlf"],
)
def test_clean_text_removes_controls_and_direction_overrides(raw, cleaned):
    assert clean_text(raw) == cleaned


def test_clean_text_keeps_newlines_accents_cjk_and_emoji():
    assert clean_text("Line one\nLine two\n\nLine four") == "Line one\nLine two\n\nLine four"
    assert clean_text("Caf\u00e9 cr\u00e8me, \u00e5ngstr\u00f6m") == "Café crème, ångström"
    assert clean_text("谢谢你的帮助！ありがとう 감사합니다") == "谢谢你的帮助！ありがとう 감사합니다"
    assert clean_text("עדי כהן") == "עדי כהן"
    assert clean_text("Great job 🎉👍🏽") == "Great job 🎉👍🏽"


def test_clean_text_nfc_normalises():
    out = clean_text("Rene\u0301 & Zoe\u0308")
    assert out == "Ren\u00e9 & Zo\u00eb"
    assert len(out) == len("René & Zoë") == 10


def test_clean_text_trims_surrounding_whitespace_only():
    assert clean_text("  \n hello  world \n ") == "hello  world"
    assert clean_text("\u202e  hi  \x00") == "hi"


def test_clean_text_does_not_glue_words_separated_by_tab_or_cr():
    assert clean_text("Thanks\tAna").split() == ["Thanks", "Ana"]
    assert clean_text("Line one\rLine two").split() == ["Line", "one", "Line", "two"]


# -- import of history (importer.py) ----------------------------------------------------------------

_VALUES = ("customer_first", "teamwork", "ownership", "speed", "integrity")
_NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
_PEOPLE = {f"{p}@example.com": DirectoryPerson(p, p.title(), f"{p}@example.com", "rep", "sales", p != "gone")
           for p in ("rita", "pia", "li", "gone")}
_CSV = ('created_at,giver_email,recipient_emails,message,gesture,values\n'
        '2026-03-02T09:15:00+01:00,Rita@Example.com,pia@example.com; li@example.com ,"Two\nlines",,speed; teamwork\n'
        '2026-03-02T09:15:00.123456+01:00,gone@example.com,pia@example.com,Left since,FLOWERS,\n'
        '\n'
        '2026-03-02,rita@example.com,pia@example.com,No time,thanks,\n'
        '2026-03-02T09:15:00+01:00,rita@example.com,pia@example.com;rita@example.com,Me too,thanks,\n'
        '2026-03-02T09:15:00+01:00,rita@example.com,pia@example.com,"Too, many",thanks,,extra\n')


def test_import_rows_are_cleaned_and_bad_ones_reported_by_the_line_they_start_on():
    good, errors = parse_csv(_CSV, _PEOPLE, _VALUES, _NOW)
    assert [(k.line, k.giver.id, [r.id for r in k.recipients], k.gesture, k.values) for k in good] == [
        (2, "rita", ["pia", "li"], "thanks", ["speed", "teamwork"]), (4, "gone", ["pia"], "flowers", [])]
    assert good[0].message == "Two\nlines" and good[0].created_at == datetime(2026, 3, 2, 8, 15, tzinfo=timezone.utc)
    assert good[1].created_at.microsecond == 123000  # what BSON keeps, so the id is stable after a round trip
    assert [(e["line"], e["code"]) for e in errors] == [(6, "invalid_created_at"), (7, "kudos_to_self"), (8, "too_many_cells")]
    shifted, errors = parse_csv(_CSV, _PEOPLE, _VALUES, _NOW, line_offset=100)
    assert [k.line for k in shifted] == [102, 104] and errors[0]["line"] == 106


def test_import_ids_depend_on_the_content_only():
    first, _ = parse_csv(_CSV, _PEOPLE, _VALUES, _NOW)
    again, _ = parse_csv(_CSV.replace("Rita@Example.com", "rita@example.com"), _PEOPLE, _VALUES, _NOW)
    assert [k.id for k in first] == [k.id for k in again] and first[0].id != first[1].id
    edited, _ = parse_csv(_CSV.replace("Left since", "Left since!"), _PEOPLE, _VALUES, _NOW)
    assert edited[1].id != first[1].id and edited[0].id == first[0].id


def test_a_bad_header_refuses_the_file():
    with pytest.raises(BadInput) as exc:
        parse_csv("when,who\n", _PEOPLE, _VALUES, _NOW)
    assert exc.value.code == "bad_csv_header"


def test_a_file_is_cut_in_parts_on_record_boundaries_keeping_its_line_numbers():
    parts = file_parts(_CSV, rows_per_part=2)
    assert [offset for _, offset in parts] == [0, 3, 5]  # the first part's second record spans two lines
    lines = [e["line"] for text, offset in parts for e in parse_csv(text, _PEOPLE, _VALUES, _NOW, offset)[1]]
    assert lines == [6, 7, 8]
    assert file_parts("created_at,giver_email\n") == [("created_at,giver_email\n", 0)]
