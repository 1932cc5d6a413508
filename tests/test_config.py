"""The config: the lecture's defaults, gains as fractions, validation."""

from __future__ import annotations

import math

import pytest

from traintop.data.errors import InputError
from traintop.engine.config import TrainConfig, gain_label, parse_gain


def test_lecture_defaults():
    c = TrainConfig().validated()
    assert (c.n_embd, c.n_hidden, c.depth, c.block_size) == (10, 100, 5, 3)
    assert c.batchnorm and c.fan_in and not c.use_bias
    assert c.gain_value == pytest.approx(5 / 3)
    assert (c.steps, c.lr, c.lr_decay_step, c.lr_after_value) == (200_000, 0.1, 100_000, 0.01)
    assert c.lr_after is None       # a tenth of --lr, whatever --lr is
    assert (c.batch_size, c.seed, c.split_seed, c.last_layer_scale) == (32, 2147483647, 42, 0.1)


def test_bias_follows_batchnorm_unless_set():
    assert TrainConfig(batchnorm=False).use_bias
    assert not TrainConfig(batchnorm=True).use_bias
    assert TrainConfig(batchnorm=True, bias=True).use_bias


def test_lr_schedule():
    c = TrainConfig(lr=0.1, lr_decay_step=10, lr_after=0.01)
    assert c.lr_at(9) == 0.1 and c.lr_at(10) == 0.01


@pytest.mark.parametrize("text, value", [("5/3", 5 / 3), ("0.5", 0.5), ("3", 3.0), (2, 2.0)])
def test_parse_gain(text, value):
    assert parse_gain(text) == pytest.approx(value)


@pytest.mark.parametrize("value, label", [(5 / 3, "5/3"), (0.5, "1/2"), (3.0, "3"),
                                           (math.pi, "3.14159")])
def test_gain_label(value, label):
    assert gain_label(value) == label


@pytest.mark.parametrize("changes, option", [
    (dict(gain="-1"), "--gain"), (dict(gain="inf"), "--gain"), (dict(lr=0.0), "--lr"),
    (dict(lr=float("nan")), "--lr"), (dict(lr_after=-1.0), "--lr-after"),
    (dict(steps=-1), "--steps"), (dict(batch_size=1), "--batch-size"),
    (dict(n_hidden=0), "--n-hidden"), (dict(stats_every=0), "--stats-every"),
    (dict(activation="relu"), "--activation"), (dict(seed=-5), "--seed"),
    (dict(last_layer_scale=0.0), "--last-layer-scale"),
])
def test_validation_names_the_option(changes, option):
    with pytest.raises(InputError) as err:
        TrainConfig().with_changes(**changes)
    assert str(err.value).startswith(option + ":")


def test_round_trip_through_dict():
    c = TrainConfig(gain="3", batchnorm=False, steps=5).validated()
    again = TrainConfig.from_dict({**c.to_dict(), "bias": c.bias})
    assert again == c
    with pytest.raises(InputError, match="unknown config keys: colour"):
        TrainConfig.from_dict({"colour": 1})
