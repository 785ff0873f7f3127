"""Faults, the quick subset (`make chaos` runs the same scenarios at scale, and the broker and
database outages): a points process killed mid-burst, the kudos process killed between its
state write and the publish, poison in a live stream. Each ends with the ledger exact."""

from __future__ import annotations

import pytest

from tests.integration import faults

pytestmark = pytest.mark.integration


def test_points_process_killed_mid_burst_loses_and_doubles_nothing(settings, producer):
    figures = faults.points_killed_mid_burst(settings, producer, faults.env_int("CHAOS_FAST_EVENTS", 150))
    figures.print("points killed mid-burst (quick)")


def test_kudos_killed_between_state_write_and_publish_publishes_once_in_effect(settings, producer):
    faults.kudos_killed_between_write_and_publish(settings, producer).print("kudos killed before publish")


def test_poison_in_a_live_stream_is_dead_lettered_and_scoring_goes_on(settings, producer):
    faults.poison_in_a_live_stream(settings, producer).print("poison in a live stream")
