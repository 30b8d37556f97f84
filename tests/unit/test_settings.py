from __future__ import annotations

from pathlib import Path

import pytest

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


def test_to_env_round_trips() -> None:
    s = Settings(broker="h:1", seed=3, state_dir=Path("v"))
    assert Settings.from_env(s.to_env()) == s


def test_every_setting_is_documented() -> None:
    for name, _default, doc in Settings.describe():
        assert name.startswith(ENV_PREFIX)
        assert doc, f"{name} has no description"
