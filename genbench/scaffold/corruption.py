"""Template of a corruption plugin: systematic ("pair-flip") label noise, each chosen example's
label moved to the next class, keeping every convention of genbench's built-in corruptions."""

from __future__ import annotations

DEPENDENCIES = ("genbench", "torch>=2.2", "pydantic>=2.5")

SUMMARY = """\
systematic label noise: each training example, chosen independently with probability p (the
corruption level), has its label y replaced by (y + `shift`) mod K, the "pair-flip" noise of
Han et al. 2018 (Co-teaching) — unlike uniform noise, the wrong labels are consistent, so a
network can learn them as a rule."""

USAGE = """\
```bash
genbench run --dataset digits --model mlp --corruption {{name}} --levels 0,0.25,0.5
genbench leaderboard
```

In an experiment file: `corruptions = [{ name = "{{name}}", shift = 3 }]`; `test_labels =
"corrupted"` corrupts the test labels the same way."""

EDIT = """\
`apply(dataset, level, seed, options, test_labels)` returns a new `genbench.datasets.Dataset`
(`dataset.with_changes(...)`); it must be a pure function of its arguments (draw everything from
generators seeded with `seed`), be the identity at level 0, only add examples as the level rises,
leave the test split alone unless `test_labels == "corrupted"`, and fill `y_train_clean` /
`y_test_clean` with the labels before any corruption. Declare `uninformative_at_full = True` only
when, at level 1, the training labels say nothing about the inputs."""

MODULE = '''\
"""{{distribution}}: a genbench plugin contributing the corruption ``{{name}}``.

genbench finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.genbench]
    {{name}} = "{{module}}"

and calls its ``register_corruptions`` hook implementation (at the bottom of this file).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import genbench
import torch
from genbench.corruptions import chosen_examples, derived_seed
from genbench.datasets import Dataset
from genbench.errors import SpecError
from pydantic import Field

__version__ = "0.1.0"

__all__ = ["{{class}}", "{{class}}Options", "flip_labels", "register_corruptions"]


def flip_labels(labels: torch.Tensor, num_classes: int, shift: int, chosen: torch.Tensor) -> torch.Tensor:
    """``labels`` with each ``chosen`` one replaced by (label + shift) mod ``num_classes``;
    ``labels`` itself (the same tensor) when nothing is chosen."""
    if not bool(chosen.any()):
        return labels
    return torch.where(chosen, (labels + shift) % num_classes, labels)


class {{class}}Options(genbench.Options):
    """Options of ``{{name}}`` (pydantic; an unknown option is an error)."""

    shift: int = Field(1, ge=1, description="a chosen label y becomes (y + shift) mod K; must not be a multiple of K")


class {{class}}:
    """Pair-flip label noise: each training example, chosen independently with probability
    p = level, has its label y replaced by (y + shift) mod K (K classes); the inputs are
    untouched.

    The examples chosen are those of genbench's built-in corruptions at the same seed and level
    (``genbench.corruptions.chosen_examples``), so raising p only adds examples. Test labels stay
    clean unless ``test_labels = "corrupted"``; then each test example is chosen with probability
    p from a seed derived from ``seed`` and flipped the same way. ``y_train_clean`` /
    ``y_test_clean`` keep the labels before any corruption.

    Source: B. Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely
    Noisy Labels", NeurIPS 2018 (pair-flip noise).
    """

    name: ClassVar[str] = "{{name}}"
    description: ClassVar[str] = "a fraction p of training labels y replaced by (y + shift) mod K (pair-flip noise)"
    Options: ClassVar[type[genbench.Options]] = {{class}}Options
    #: False: at level 1 every label is a fixed function of the true class, so the labels still
    #: carry all the information about the inputs (no capability score must be 0 there).
    uninformative_at_full: ClassVar[bool] = False

    def apply(
        self,
        dataset: Dataset,
        level: float,
        seed: int,
        options: {{class}}Options,
        test_labels: Literal["clean", "corrupted"] = "clean",
    ) -> Dataset:
        if options.shift % dataset.num_classes == 0:
            raise SpecError(
                f"corruption '{{name}}': shift={options.shift} is a multiple of the {dataset.num_classes} classes "
                f"of dataset '{dataset.name}', so it would change no label"
            )
        y_train = flip_labels(
            dataset.y_train, dataset.num_classes, options.shift, chosen_examples(dataset.num_train, level, seed)
        )
        y_test = dataset.y_test
        if test_labels == "corrupted":
            test_chosen = chosen_examples(dataset.num_test, level, derived_seed(seed, "test-examples"))
            y_test = flip_labels(dataset.y_test, dataset.num_classes, options.shift, test_chosen)
        return dataset.with_changes(
            y_train=y_train,
            y_test=y_test,
            y_train_clean=dataset.clean_train_labels(),
            y_test_clean=dataset.clean_test_labels(),
        )


@genbench.hookimpl
def register_corruptions(register) -> None:
    register({{class}}())
'''

TEST = '''\
"""genbench's conformance kit on the corruption ``{{name}}``, and its flips by hand.

Run with ``pytest`` from the plugin's folder.
"""

import pytest
import torch
from genbench.datasets import Dataset
from genbench.errors import SpecError
from genbench.testing import check_corruption

from {{module}} import {{class}}


def small_dataset(num_train=400, num_test=100, num_classes=5):
    generator = torch.Generator().manual_seed(0)
    return Dataset(
        name="small",
        x_train=torch.randn(num_train, 3, generator=generator),
        y_train=torch.arange(num_train) % num_classes,
        x_test=torch.randn(num_test, 3, generator=generator),
        y_test=torch.arange(num_test) % num_classes,
        num_classes=num_classes,
    )


def test_{{identifier}}_keeps_the_corruption_contract():
    check_corruption({{class}}())
    check_corruption({{class}}(), {"shift": 3})


def test_{{identifier}}_moves_each_chosen_label_by_shift():
    dataset = small_dataset()
    options = {{class}}.Options(shift=2)
    corrupted = {{class}}().apply(dataset, 0.5, seed=7, options=options)
    changed = corrupted.y_train != dataset.y_train
    assert 0.35 < changed.double().mean().item() < 0.65  # about half the examples
    assert torch.equal(corrupted.y_train[changed], (dataset.y_train[changed] + 2) % 5)
    assert torch.equal(corrupted.y_train_clean, dataset.y_train)
    assert corrupted.x_train is dataset.x_train and corrupted.x_test is dataset.x_test
    assert torch.equal(corrupted.y_test, dataset.y_test)  # test labels stay clean by default


def test_{{identifier}}_is_the_identity_at_level_0_and_nested_in_the_level():
    dataset = small_dataset()
    corruption, options = {{class}}(), {{class}}.Options()
    assert torch.equal(corruption.apply(dataset, 0.0, 3, options).y_train, dataset.y_train)
    low = corruption.apply(dataset, 0.2, 3, options).y_train != dataset.y_train
    high = corruption.apply(dataset, 0.6, 3, options).y_train != dataset.y_train
    assert bool((low <= high).all()) and high.sum() > low.sum()
    full = corruption.apply(dataset, 1.0, 3, options, test_labels="corrupted")
    assert torch.equal(full.y_train, (dataset.y_train + 1) % 5)
    assert torch.equal(full.y_test, (dataset.y_test + 1) % 5)
    assert torch.equal(full.y_test_clean, dataset.y_test)


def test_{{identifier}}_refuses_a_shift_that_changes_nothing():
    with pytest.raises(SpecError, match="multiple"):
        {{class}}().apply(small_dataset(num_classes=5), 0.5, 0, {{class}}.Options(shift=10))
'''
