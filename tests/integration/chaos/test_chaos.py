"""The slow fault suite (`make chaos`): the scenarios of tests/integration/faults.py at scale,
the broker and database outages, and the scaling model of several processes per service.

Not collected by the default run (tests/conftest.py): run it by naming this folder. Sizes:
``CHAOS_EVENTS`` (20000), ``CHAOS_STREAM_EVENTS`` (2000), ``CHAOS_LOAD`` (96), patience:
``CHAOS_TIMEOUT_S`` (1800).
"""

from __future__ import annotations

import pytest

from tests.integration import faults

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(4 * 3600)]


def test_points_process_killed_mid_burst(settings, producer):
    faults.points_killed_mid_burst(settings, producer, faults.env_int("CHAOS_EVENTS", 20000)).print(
        "points killed mid-burst")


def test_two_points_processes_in_one_group_one_killed_mid_stream(settings, producer):
    faults.points_killed_mid_burst(settings, producer, faults.env_int("CHAOS_STREAM_EVENTS", 2000), processes=2).print(
        "two points processes, one killed")


def test_kafka_broker_restarts_mid_stream(stack_settings, settings, producer):
    faults.broker_restart_mid_stream(stack_settings, settings, producer, faults.env_int("CHAOS_STREAM_EVENTS", 2000)).print(
        "Kafka broker restarted")


def test_ferretdb_down_for_ten_seconds_mid_stream(stack_settings, settings, producer):
    outage = faults.env_int("CHAOS_OUTAGE_S", 10)
    faults.database_outage_mid_stream(stack_settings, settings, producer, faults.env_int("CHAOS_STREAM_EVENTS", 2000),
                                      outage).print("FerretDB down")


def test_scaling_model_several_processes_per_service_one_points_process_killed(settings):
    faults.scaling_model(settings, faults.env_int("CHAOS_LOAD", 96)).print("scaling model")
