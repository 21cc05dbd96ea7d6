"""TrainConfig: defaults, validation, and messages that name the bad key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chainkeeper.core.errors import InvalidInput
from chainkeeper.training.config import TrainConfig, parse_train_config


def test_empty_mapping_gives_the_measured_defaults() -> None:
    config = parse_train_config({})
    assert (config.epochs, config.batch_size, config.max_length, config.seed) == (1, 32, 64, 13)
    assert config.learning_rate == 2e-4
    assert config.pooling == "mean"
    assert config.max_steps is None and config.limit_train is None


def test_unknown_key_is_named_with_a_suggestion_and_the_allowed_keys() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_train_config({"learning_rat": 1e-4})
    assert "learning_rat" in err.value.message
    assert err.value.hint is not None
    assert "'learning_rat' → 'learning_rate'" in err.value.hint
    assert "batch_size" in err.value.hint and "pooling" in err.value.hint


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("learning_rate", 0.0, id="zero-lr"),
        pytest.param("learning_rate", 1.5, id="lr-not-below-one"),
        pytest.param("batch_size", 0, id="zero-batch"),
        pytest.param("epochs", -1, id="negative-epochs"),
        pytest.param("max_steps", 0, id="zero-max-steps"),
        pytest.param("warmup_ratio", 1.0, id="warmup-all-steps"),
        pytest.param("dropout", 1.0, id="dropout-one"),
        pytest.param("pooling", "max", id="unknown-pooling"),
        pytest.param("limit_train", 0, id="zero-limit"),
        pytest.param("batch_size", "many", id="not-a-number"),
    ],
)
def test_bad_value_is_refused_with_key_and_value(key: str, value: object) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_train_config({key: value})
    assert f"{key}={value!r}" in err.value.message


def test_config_is_frozen_and_forbids_extra_fields() -> None:
    config = TrainConfig()
    with pytest.raises(ValidationError):
        config.epochs = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        TrainConfig(colour="blue")  # type: ignore[call-arg]


def test_max_steps_overrides_epochs_in_the_step_count() -> None:
    assert TrainConfig(batch_size=32, epochs=2).total_steps(100) == 8  # 4 batches (last one short) x 2
    assert TrainConfig(batch_size=32, epochs=2, max_steps=3).total_steps(100) == 3


def test_config_round_trips_through_its_stored_json() -> None:
    config = TrainConfig(learning_rate=3e-5, pooling="cls", limit_train=500)
    assert parse_train_config(config.model_dump(mode="json")) == config
