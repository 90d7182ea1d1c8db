"""No training step reads the device back: stop and divergence checks wait for the epoch's end.

On a GPU, a ``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``.nonzero()`` or a Python
branch on a tensor (``bool``, ``float``, ``int``) waits for every queued kernel; one per step
serializes the host and the device. These tests count such calls during training on the CPU, by
wrapping those ``torch.Tensor`` methods while ``EnsembleTrainer`` trains, and require none inside
a training step and a bounded number per epoch.
"""

from __future__ import annotations

import collections
import contextlib

import pytest
import torch

from genbench.models.cnn import CNNOptions, SmallConvNet
from genbench.models.mlp import MLPOptions, MultilayerPerceptron
from genbench.schemas import TrainConfig
from genbench.training import ensemble
from genbench.training.ensemble import EnsembleTrainer

#: The tensor methods that make the host wait for the device.
READBACKS = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def counted_readbacks():
    """Counts of READBACKS calls, split into those inside ``_Fit.train_step`` and the rest."""
    counts = {"step": collections.Counter(), "other": collections.Counter()}
    inside = [False]

    def counting(name, original):
        def method(self, *args, **kwargs):
            counts["step" if inside[0] else "other"][name] += 1
            return original(self, *args, **kwargs)

        return method

    original_step = ensemble._Fit.train_step

    def train_step(self):
        inside[0] = True
        try:
            return original_step(self)
        finally:
            inside[0] = False

    with pytest.MonkeyPatch.context() as patch:
        for name in READBACKS:
            patch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
        patch.setattr(ensemble._Fit, "train_step", train_step)
        yield counts


def _fit(factory, options, x, y, config, members=3, per_member_inputs=False):
    build = lambda: factory.build(tuple(x.shape[2 if per_member_inputs else 1:]), 10, options)  # noqa: E731
    labels = y.expand(members, -1).clone()
    return EnsembleTrainer(config, "cpu", factory.vmappable).fit(
        build, x, labels, list(range(members)), per_member_inputs=per_member_inputs
    )


@pytest.mark.parametrize("early_stopping", [False, True])
def test_an_mlp_ensemble_never_reads_the_device_back_inside_a_step(early_stopping):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 8, 8, generator=generator)
    y = torch.randint(0, 10, (96,), generator=generator)
    config = TrainConfig(
        lr=0.05, schedule="constant", batch_size=16, max_steps=60,
        early_stopping_patience=2 if early_stopping else None,
    )
    with counted_readbacks() as counts:
        outcomes = _fit(MultilayerPerceptron(), MLPOptions(hidden=[16]), x, y, config)
    assert sum(outcome.steps for outcome in outcomes) > 0
    assert counts["step"] == collections.Counter(), f"host readbacks inside training steps: {dict(counts['step'])}"
    epochs = max(outcome.epochs for outcome in outcomes)
    assert sum(counts["other"].values()) <= 40 * (epochs + 1), dict(counts["other"])


def test_a_conv_ensemble_with_augmentation_and_inputs_of_its_own_never_reads_back_inside_a_step():
    generator = torch.Generator().manual_seed(1)
    members = 2
    x = torch.randn(members, 48, 3, 12, 12, generator=generator)
    y = torch.randint(0, 10, (48,), generator=generator)
    config = TrainConfig(lr=0.05, schedule="constant", batch_size=16, max_steps=12, augment=True, augment_padding=2)
    with counted_readbacks() as counts:
        outcomes = _fit(SmallConvNet(), CNNOptions(channels=[4, 8]), x, y, config, members=members, per_member_inputs=True)
    assert all(outcome.steps == 12 for outcome in outcomes)
    assert counts["step"] == collections.Counter(), f"host readbacks inside training steps: {dict(counts['step'])}"


def test_the_counter_sees_a_readback_inside_a_step(monkeypatch):
    """The instrument itself: a step that calls .item() is counted."""
    original = ensemble._Fit.train_step

    def reading_step(self):
        original(self)
        self.running["loss"].sum().item()

    monkeypatch.setattr(ensemble._Fit, "train_step", reading_step)
    x = torch.randn(32, 1, 8, 8)
    y = torch.randint(0, 10, (32,))
    config = TrainConfig(lr=0.05, schedule="constant", batch_size=16, max_steps=4)
    with counted_readbacks() as counts:
        _fit(MultilayerPerceptron(), MLPOptions(hidden=[8]), x, y, config, members=2)
    assert counts["step"]["item"] == 4
