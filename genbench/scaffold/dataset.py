"""Template of a dataset plugin: K interleaved noisy spirals in the plane, generated
deterministically from a seed (no files, no download)."""

from __future__ import annotations

DEPENDENCIES = ("genbench", "torch>=2.2", "pydantic>=2.5", "numpy>=1.24")

SUMMARY = """\
a synthetic classification dataset, `num_classes` interleaved spirals in the plane with Gaussian
noise, generated deterministically from `seed` (no files, nothing to download). Inputs have shape
(2,), labels are balanced."""

USAGE = """\
```bash
genbench run --dataset {{name}} --model mlp --corruption labels --levels 0,0.5,1
genbench leaderboard
```

In an experiment file: `datasets = [{ name = "{{name}}", num_classes = 4, noise = 0.1 }]`; the
`subset` option every genbench dataset has (train on a seeded subset) comes with it."""

EDIT = """\
`load(options, data_dir)` returns a `genbench.datasets.Dataset` of float32 inputs and int64 labels
(`genbench.datasets.base.as_dataset` builds one from numpy arrays). Loading must be deterministic
in the options (seed every draw) and must never download anything; a file-backed dataset reads
from `data_dir` and raises `genbench.errors.DataError` saying what is missing. Options that
inherit `genbench.datasets.base.DatasetOptions` get `subset` for free."""

MODULE = '''\
"""{{distribution}}: a genbench plugin contributing the dataset ``{{name}}``.

genbench finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.genbench]
    {{name}} = "{{module}}"

and calls its ``register_datasets`` hook implementation (at the bottom of this file).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import genbench
import numpy as np
from genbench.datasets import Dataset
from genbench.datasets.base import DatasetOptions, as_dataset
from pydantic import Field

__version__ = "0.1.0"

__all__ = ["{{class}}", "{{class}}Options", "register_datasets", "spirals"]


def spirals(
    count: int, num_classes: int, turns: float, noise: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points on ``num_classes`` interleaved spirals: inputs [count, 2], labels [count].

    Labels are balanced (k = i mod K, then shuffled). A point of class k at t ~ U(0, 1) lies at
    radius t and angle 2π (turns · t + k / K), plus N(0, noise² I) noise."""
    labels = rng.permutation(np.arange(count) % num_classes)
    t = rng.uniform(0.0, 1.0, count)
    angle = 2 * math.pi * (turns * t + labels / num_classes)
    points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return points + noise * rng.standard_normal((count, 2)), labels


class {{class}}Options(DatasetOptions):
    """Options of ``{{name}}`` (pydantic; an unknown option is an error). ``subset`` and
    ``subset_seed`` come from ``DatasetOptions``."""

    n_train: int = Field(1000, gt=0, description="training examples")
    n_test: int = Field(1000, gt=0, description="test examples")
    num_classes: int = Field(3, ge=2, description="classes, one spiral arm each")
    turns: float = Field(1.0, gt=0, description="turns of each arm from the centre to radius 1")
    noise: float = Field(0.05, ge=0, description="standard deviation of the Gaussian noise added to each point")
    seed: int = Field(0, description="seed of both samples")


class {{class}}:
    """Interleaved spirals: x = t (cos φ, sin φ) + ε, φ = 2π (turns · t + y / K), t ~ U(0, 1),
    ε ~ N(0, noise² I), y balanced over the K classes.

    Source: generated (no file); the classic two-spirals task (Lang and Witbrock 1988) with K
    arms. The training and test samples come from two independent streams of
    ``numpy.random.SeedSequence(seed)``, so changing ``n_train`` leaves the test set unchanged.
    No preprocessing (the points lie in about [-1, 1]²); inputs have shape (2,).
    """

    name: ClassVar[str] = "{{name}}"
    description: ClassVar[str] = "synthetic: K interleaved noisy spirals in the plane, seeded (no files)"
    Options: ClassVar[type[genbench.Options]] = {{class}}Options

    def load(self, options: {{class}}Options, data_dir: str | Path | None = None) -> Dataset:
        train_seed, test_seed = np.random.SeedSequence(options.seed).spawn(2)
        sample = (options.num_classes, options.turns, options.noise)
        x_train, y_train = spirals(options.n_train, *sample, rng=np.random.default_rng(train_seed))
        x_test, y_test = spirals(options.n_test, *sample, rng=np.random.default_rng(test_seed))
        return as_dataset("{{name}}", x_train, y_train, x_test, y_test, num_classes=options.num_classes)


@genbench.hookimpl
def register_datasets(register) -> None:
    register({{class}}())
'''

TEST = '''\
"""genbench's conformance kit on the dataset ``{{name}}``, and its samples by hand.

Run with ``pytest`` from the plugin's folder.
"""

import math

import torch
from genbench.testing import check_dataset

from {{module}} import {{class}}


def load(**options):
    return {{class}}().load({{class}}.Options(**options), None)


def test_{{identifier}}_keeps_the_dataset_contract():
    check_dataset({{class}}())
    check_dataset({{class}}(), {"n_train": 200, "n_test": 50, "num_classes": 5, "noise": 0.0})


def test_{{identifier}}_is_balanced_and_shaped_as_its_options_say():
    dataset = load(n_train=300, n_test=60, num_classes=4)
    assert dataset.x_train.shape == (300, 2) and dataset.x_test.shape == (60, 2)
    assert dataset.x_train.dtype == torch.float32 and dataset.y_train.dtype == torch.int64
    assert dataset.num_classes == 4
    assert torch.bincount(dataset.y_train).tolist() == [75, 75, 75, 75]


def test_{{identifier}}_points_lie_on_their_arm_without_noise():
    dataset = load(n_train=200, num_classes=3, turns=0.5, noise=0.0)
    x, y = dataset.x_train.double(), dataset.y_train.double()
    t = x.norm(dim=1)  # the radius is t
    angle = torch.atan2(x[:, 1], x[:, 0])
    expected = 2 * math.pi * (0.5 * t + y / 3)
    # equal angles up to whole turns
    assert torch.allclose(torch.cos(angle - expected), torch.ones_like(t), atol=1e-4)


def test_{{identifier}}_is_deterministic_in_its_seed():
    first, again, other = load(seed=1), load(seed=1), load(seed=2)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    assert not torch.equal(first.x_train, other.x_train)
    # the test set does not depend on the training set's size
    assert torch.equal(load(seed=1, n_train=10).x_test, first.x_test)
'''
