"""Each word of the product is defined once (shared/vocabulary.py) and the rest follow it."""

from __future__ import annotations

import pytest

from services.gateway import types
from services.recognition.kudos import domain as kudos_domain
from services.recognition.points import queries, rules
from services.requests import domain as requests_domain
from shared import calendar, vocabulary
from shared.events import schemas


@pytest.mark.parametrize("words", [vocabulary.Role, vocabulary.Department, vocabulary.RequestKind,
                                   vocabulary.RequestStatus, vocabulary.Priority, vocabulary.Outcome,
                                   vocabulary.Gesture, vocabulary.KudosDirection, vocabulary.Period, vocabulary.Scope])
def test_the_gateway_enum_is_the_vocabulary_upper_cased(words):
    graphql = getattr(types, words.__name__)
    assert [(m.name, m.value) for m in graphql._meta.enum] == [(w.value.upper(), w.value) for w in words]
    assert graphql._meta.description == words.__doc__.strip()


def test_every_kind_of_request_goes_to_a_department_queue():
    assert tuple(requests_domain.KIND_DEPARTMENT) == requests_domain.KINDS == vocabulary.values(vocabulary.RequestKind)
    assert set(requests_domain.KIND_DEPARTMENT.values()) <= set(vocabulary.values(vocabulary.Department))


def test_the_lifecycle_names_every_status_once():
    assert requests_domain.OPEN + (requests_domain.DELIVERED, requests_domain.CLOSED, requests_domain.CANCELLED) \
        == requests_domain.STATUSES == vocabulary.values(vocabulary.RequestStatus)


def test_services_and_events_use_the_same_words():
    assert calendar.PERIODS == ("week", "month", "quarter", "all")
    assert queries.SCOPES == vocabulary.values(vocabulary.Scope)
    assert rules.ROLES == requests_domain.ROLES == vocabulary.values(vocabulary.Role)
    assert kudos_domain.GESTURES == vocabulary.values(vocabulary.Gesture)
    assert schemas.Role is vocabulary.Role and schemas.Gesture is vocabulary.Gesture
