"""genbench-pgdl: the winning measures of the NeurIPS 2020 competition on Predicting
Generalization in Deep Learning (PGDL) as genbench measures.

- ``dbi-mixup`` (1st place, Natekar & Sharma 2020): Davies–Bouldin index of the first layer's
  class clusters × (1 − within-class mixup accuracy);
- ``label-variation`` (3rd place, Lassance et al. 2020): label variation on a k-nearest-neighbour
  graph of the penultimate features of mixed-up training examples.

genbench finds this module through the entry point declared in ``pyproject.toml``::

    [project.entry-points.genbench]
    pgdl = "genbench_pgdl"

and calls its ``register_measures`` hook implementation.
"""

from __future__ import annotations

import genbench
from genbench_pgdl.dbi_mixup import DbiMixup, DbiMixupOptions, davies_bouldin
from genbench_pgdl.label_variation import (
    LabelVariation,
    LabelVariationOptions,
    knn_adjacency,
    label_variation,
)

__version__ = "0.1.0"

__all__ = [
    "DbiMixup",
    "DbiMixupOptions",
    "LabelVariation",
    "LabelVariationOptions",
    "davies_bouldin",
    "knn_adjacency",
    "label_variation",
    "register_measures",
]


@genbench.hookimpl
def register_measures(register) -> None:
    register(DbiMixup())
    register(LabelVariation())
