"""Template of a measure plugin: the inverse squared margin at a chosen percentile, a complexity
measure that runs the network on its training set (Jiang et al. 2020, "inverse-margin")."""

from __future__ import annotations

DEPENDENCIES = ("genbench", "torch>=2.2", "pydantic>=2.5")

SUMMARY = """\
a complexity measure, the inverse squared margin 1/γ² of the trained network, γ the
`percentile`-th percentile (default 10) of its training margins logit_y − max_{j≠y} logit_j
(Jiang et al. 2020, "Fantastic Generalization Measures and Where to Find Them", inverse-margin)."""

USAGE = """\
```bash
genbench run --no-evaluate                       # train the default grid (skip if the store has runs)
genbench evaluate --measure {{name}}               # compute it on every stored run and rank it
```

In an experiment file: `measures = [{ name = "{{name}}", percentile = 5.0 }]`."""

EDIT = """\
The formula is the pure function `inverse_squared_margin` (margins in, value out) and
`training_margins` runs the network on the training set; `compute(ctx, options)` puts them together.
Keep the class docstring's formula and source in step with the code, and bump `version` whenever
the values change (it is stored with every value). Add options as fields of
`{{class}}Options` (each with a default and a description); declare in `requires` what else the
measure reads (`init_weights`, `training_log`, `retrain`)."""

MODULE = '''\
"""{{distribution}}: a genbench plugin contributing the measure ``{{name}}``.

genbench finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.genbench]
    {{name}} = "{{module}}"

and calls its ``register_measures`` hook implementation (at the bottom of this file).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import genbench
import torch
from genbench.errors import NotApplicable
from pydantic import Field

__version__ = "0.1.0"

__all__ = [
    "{{class}}",
    "{{class}}Options",
    "classification_margins",
    "inverse_squared_margin",
    "register_measures",
    "training_margins",
]

#: Training examples per forward pass (the value does not depend on it, so it is no option).
BATCH_SIZE = 1024


def classification_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The margin of each example, logit_y − max_{j≠y} logit_j, for ``logits`` [n, classes]
    and ``labels`` [n] (positive exactly where the example is classified as its label)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(dim=1).values


def inverse_squared_margin(margins: torch.Tensor, percentile: float) -> float:
    """1/γ² with γ the ``percentile``-th percentile of ``margins`` (linear interpolation, in
    float64). Raises ``NotApplicable`` when γ ≤ 0: the network then misclassifies more than
    ``percentile`` % of its training set and the measure has no value."""
    gamma = torch.quantile(margins.double(), percentile / 100.0).item()
    if not gamma > 0:
        raise NotApplicable(
            f"the {percentile:g}th percentile training margin is {gamma:.3g} <= 0: "
            "the network misclassifies too much of its training set"
        )
    return 1.0 / gamma**2


def training_margins(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, device) -> torch.Tensor:
    """The margin of every training example under ``model`` (left in the mode it is in, never
    changed), computed in batches of ``BATCH_SIZE`` on ``device``; a CPU tensor [n]."""
    parts = []
    with torch.no_grad():
        for start in range(0, inputs.shape[0], BATCH_SIZE):
            x = inputs[start : start + BATCH_SIZE].to(device)
            y = labels[start : start + BATCH_SIZE].to(device)
            parts.append(classification_margins(model(x), y).cpu())
    return torch.cat(parts)


class {{class}}Options(genbench.Options):
    """Options of ``{{name}}`` (pydantic; an unknown option is an error)."""

    percentile: float = Field(
        10.0,
        ge=0.0,
        le=100.0,
        description="the percentile of the training margins taken as the margin γ (10: Jiang et al.'s choice; "
        "0: the smallest margin)",
    )


class {{class}}:
    """Inverse squared margin of the trained network on its training set.

    {{name}} = 1 / γ²,  γ = the q-th percentile over training examples (x_i, y_i) of the margin
    f(x_i)[y_i] − max_{j≠y_i} f(x_i)[j], q = ``percentile`` (default 10), f the logits; the
    labels are those the network was trained on (corrupted ones included). Larger values predict
    a larger generalization gap (a complexity). No value (``NotApplicable``) when γ ≤ 0.

    Source: Y. Jiang, B. Neyshabur, H. Mobahi, D. Krishnan and S. Bengio, "Fantastic
    Generalization Measures and Where to Find Them", ICLR 2020, measure "inverse-margin"
    (margin γ = the 10th percentile, as there).
    """

    name: ClassVar[str] = "{{name}}"
    kind: ClassVar[Literal["complexity", "capability"]] = "complexity"
    version: ClassVar[str] = "1"  # bump whenever the values change: it is stored with every value
    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    source: ClassVar[str] = "Jiang et al. 2020, Fantastic Generalization Measures (inverse-margin)"
    description: ClassVar[str] = "inverse squared margin 1/γ², γ a percentile of the training margins"
    Options: ClassVar[type[genbench.Options]] = {{class}}Options

    def compute(self, ctx, options: {{class}}Options) -> float:
        # The margins do not depend on the options: computed once per run and shared through the
        # run's cache (the key names this plugin, so no other measure's entry is taken for it).
        margins = ctx.cached(
            "{{name}}:training-margins",
            lambda: training_margins(ctx.model, ctx.train_inputs, ctx.train_labels, ctx.device),
        )
        return inverse_squared_margin(margins, options.percentile)


@genbench.hookimpl
def register_measures(register) -> None:
    register({{class}}())
'''

TEST = '''\
"""genbench's conformance kit on the measure ``{{name}}``, and its formula by hand.

Run with ``pytest`` from the plugin's folder.
"""

import pytest
import torch
from genbench.errors import NotApplicable
from genbench.testing import check_measure

from {{module}} import {{class}}, classification_margins, inverse_squared_margin


def test_{{identifier}}_keeps_the_measure_contract():
    values = check_measure({{class}}())
    smallest = check_measure({{class}}(), {"percentile": 0.0})
    median = check_measure({{class}}(), {{class}}.Options(percentile=50.0))
    for architecture, value in values.items():
        # the fitted check networks classify every training example as its label: γ > 0
        assert value > 0
        # a higher percentile is a larger margin, hence a smaller 1/γ²
        assert median[architecture] <= value <= smallest[architecture]


def test_{{identifier}}_formula_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5], [1.0, 1.0, 4.0], [2.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 0])
    margins = classification_margins(logits, labels)
    assert margins.tolist() == [2.0, 0.5, 3.0, 2.0]
    assert inverse_squared_margin(margins, 0.0) == pytest.approx(1 / 0.5**2)  # the smallest margin
    assert inverse_squared_margin(margins, 50.0) == pytest.approx(1 / 2.0**2)  # the median
    assert inverse_squared_margin(margins, 100.0) == pytest.approx(1 / 3.0**2)  # the largest


def test_{{identifier}}_has_no_value_when_the_margin_is_not_positive():
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 0])  # two of three misclassified
    with pytest.raises(NotApplicable):
        inverse_squared_margin(classification_margins(logits, labels), 10.0)


def test_{{identifier}}_rejects_an_unknown_or_out_of_range_option():
    with pytest.raises(ValueError):
        {{class}}.Options(percentile=101.0)
    with pytest.raises(ValueError):
        {{class}}.Options(quantile=0.1)
'''
