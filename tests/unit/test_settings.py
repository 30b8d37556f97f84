from __future__ import annotations

from pathlib import Path

import pytest

from learners.drift import DriftConfig
from learners.options import EdgeOptions
from streams import topics
from streams.settings import ENV_PREFIX, Settings


def test_defaults_and_env_parsing() -> None:
    s = Settings.from_env(
        {"ECC_TOPIC_PARTITIONS": "8", "ECC_STATE_DIR": "/tmp/x", "ECC_GATE_TOLERANCE": "0.1"}
    )
    assert s.topic_partitions == 8
    assert s.state_dir == Path("/tmp/x")
    assert s.gate_tolerance == pytest.approx(0.1)
    assert Settings.from_env({}).topic_partitions == Settings().topic_partitions


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ValueError, match="ECC_TOPIC_PARTITIONS='many'"):
        Settings.from_env({"ECC_TOPIC_PARTITIONS": "many"})


def test_a_negative_thread_count_or_niceness_is_refused() -> None:
    with pytest.raises(ValueError, match="ECC_LEARN_NICE=-1: 0 or more"):
        Settings.from_env({"ECC_LEARN_NICE": "-1"})
    with pytest.raises(ValueError, match="ECC_INFER_THREADS=-2"):
        Settings(infer_threads=-2)


def test_to_env_round_trips() -> None:
    s = Settings(broker="h:1", seed=3, state_dir=Path("v"))
    assert Settings.from_env(s.to_env()) == s


def test_every_setting_is_documented() -> None:
    for name, _default, doc in Settings.describe():
        assert name.startswith(ENV_PREFIX)
        assert doc, f"{name} has no description"


def test_component_configs_take_their_defaults_from_one_place() -> None:
    """Default settings build exactly the components' own default configurations: a default
    is written once (in the component) and the settings follow it."""
    assert Settings().edge_options() == EdgeOptions()
    assert Settings().drift_config() == DriftConfig()


def test_settings_reach_the_component_configs() -> None:
    s = Settings(lora_r=4, consolidate_steps=2, gate_tolerance=0.05, drift_min_turns=9)
    edge, drift = s.edge_options(), s.drift_config()
    assert (edge.lora.r, edge.train.steps, edge.gate.tolerance) == (4, 2, 0.05)
    assert drift.min_turns == 9 and drift.threshold == DriftConfig().threshold


def test_worker_roles_are_written_once() -> None:
    from streams.agents import REGISTER

    assert tuple(REGISTER) == topics.ROLES


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="ECC_MODEL_PRECISION='fp8': choose one of auto"):
        Settings.from_env({"ECC_MODEL_PRECISION": "fp8"})
