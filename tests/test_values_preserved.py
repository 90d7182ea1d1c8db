"""Every built-in measure keeps its value on the reference store (tests/reference/values.py).

Deterministic measures must agree to 1e-6 relative. A measure whose value changes by design
bumps its version, says why in its docstring, and its reference value is recorded again
(``python -m tests.reference.values``)."""

from __future__ import annotations

import json
import math

import pytest

from tests.reference import values as reference

pytestmark = pytest.mark.slow

RTOL = 1e-6


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    return reference.compute(tmp_path_factory.mktemp("reference") / "store")


@pytest.fixture(scope="module")
def recorded():
    return json.loads(reference.PATH.read_text())


def test_the_same_runs_and_measures_are_evaluated(computed, recorded):
    assert sorted(computed) == sorted(recorded)
    for label in recorded:
        assert sorted(computed[label]) == sorted(recorded[label]), label


def test_every_value_is_preserved(computed, recorded):
    differences = []
    for label, measures in recorded.items():
        for measure, expected in measures.items():
            got = computed[label][measure]
            if got["failed"] != expected["failed"]:
                differences.append(f"{label} {measure}: failed {expected['failed']} -> {got['failed']}")
                continue
            want, have = reference.decoded(expected["value"]), reference.decoded(got["value"])
            same = (math.isnan(want) and math.isnan(have)) or want == have or math.isclose(want, have, rel_tol=RTOL)
            if not same:
                differences.append(f"{label} {measure}: {want!r} -> {have!r}")
    assert not differences, "\n".join(differences)
