from pathlib import Path

import pytest

from shared.config import ConfigError, Settings, load_settings


def test_defaults_describe_the_local_stack():
    s = load_settings(env={})
    assert s.kafka_servers == ["127.0.0.1:9092"]
    assert s.mongo_uri == "mongodb://127.0.0.1:27017/"
    assert (s.gateway_port, s.requests_port, s.kudos_port, s.points_port) == (8000, 8001, 8002, 8003)


def test_environment_variables_override_defaults():
    s = load_settings(env={"INSIDETRACK_KAFKA_PORT": "19092", "INSIDETRACK_NAME_PREFIX": "t1_", "INSIDETRACK_VAR_DIR": "/tmp/x"})
    assert s.kafka_servers == ["127.0.0.1:19092"]
    assert s.topic("kudos") == "t1_kudos" and s.database("points") == "t1_insidetrack_points"
    assert s.var_dir == Path("/tmp/x")


@pytest.mark.parametrize(
    "var, value, reason",
    [
        ("INSIDETRACK_KAFKA_PORT", "abc", "valid integer"),
        ("INSIDETRACK_KAFKA_PORT", "70000", "less than or equal to 65535"),
        ("INSIDETRACK_KAFKA_BOOTSTRAP", "localhost", "expected host:port"),
        ("INSIDETRACK_MONGO_URL", "postgres://x", "mongodb://"),
        ("INSIDETRACK_LOG_LEVEL", "LOUD", "DEBUG"),
        ("INSIDETRACK_NAME_PREFIX", "Bad-Prefix", "lower-case"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable_and_the_reason(var, value, reason):
    with pytest.raises(ConfigError) as exc:
        load_settings(env={var: value})
    message = str(exc.value)
    assert var in message and repr(value) in message and reason in message


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"INSIDETRACK_KAFKA_PORT": "x", "INSIDETRACK_MONGO_PORT": "y"})
    assert "INSIDETRACK_KAFKA_PORT" in str(exc.value) and "INSIDETRACK_MONGO_PORT" in str(exc.value)


def test_services_extend_settings_with_their_own_fields():
    class KudosSettings(Settings):
        monthly_allowance: int = 20

    assert load_settings(KudosSettings, env={"INSIDETRACK_MONTHLY_ALLOWANCE": "5"}).monthly_allowance == 5


def test_points_stages_are_named_from_the_known_ones_and_a_wrong_name_is_refused_with_the_list():
    from services.recognition.points.config import PointsSettings

    assert load_settings(PointsSettings, env={}).stages == {"score", "apply", "insights"}
    assert load_settings(PointsSettings, env={"INSIDETRACK_POINTS_STAGES": " insights, apply"}).points_stages == "apply,insights"
    for wrong in ("scor", "", "score,apply,bonus"):
        with pytest.raises(ConfigError) as caught:
            load_settings(PointsSettings, env={"INSIDETRACK_POINTS_STAGES": wrong})
        assert "INSIDETRACK_POINTS_STAGES" in str(caught.value) and "score, apply, insights" in str(caught.value)


def test_services_run_full_garbage_collections_as_seldom_as_configured():
    """Busy consumers spent a third to half of their CPU in Python's full collections: a
    service sets how many middle collections come before a full one, from its settings."""
    import gc

    from shared.serve import tune_collector

    before = gc.get_threshold()
    try:
        from services.recognition.points.config import PointsSettings

        tune_collector(load_settings(PointsSettings, env={}))  # the points processes: 3 times rarer
        assert gc.get_threshold() == (before[0], before[1], 30)
        tune_collector(load_settings(env={}))  # the other services: Python's own pace
        assert gc.get_threshold() == (before[0], before[1], 10)
        tune_collector(load_settings(PointsSettings, env={"INSIDETRACK_GC_FULL_AFTER": "25"}))
        assert gc.get_threshold()[2] == 25
    finally:
        gc.set_threshold(*before)
    with pytest.raises(ConfigError, match="GC_FULL_AFTER"):
        load_settings(env={"INSIDETRACK_GC_FULL_AFTER": "0"})
