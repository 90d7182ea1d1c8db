"""genbench's conformance suite on the PGDL measures: `pytest plugins/genbench-pgdl/tests`."""

import math

from genbench_pgdl import DbiMixup, LabelVariation

from genbench.testing import check_measure


def test_dbi_mixup_keeps_the_measure_contract():
    values = check_measure(DbiMixup())
    assert set(values) == {"mlp", "cnn"}
    assert all(math.isfinite(v) and v >= 0 for v in values.values())
    raw = check_measure(DbiMixup(), {"after_activation": False, "shuffle": False, "pool": 1})
    assert all(math.isfinite(v) and v >= 0 for v in raw.values())


def test_label_variation_keeps_the_measure_contract():
    values = check_measure(LabelVariation())
    assert set(values) == {"mlp", "cnn"}
    assert all(0 <= v <= 1000 for v in values.values())
    hard = check_measure(LabelVariation(), {"mixup_alpha": 0.0, "k": 3})
    assert all(0 <= v <= 1000 for v in hard.values())
