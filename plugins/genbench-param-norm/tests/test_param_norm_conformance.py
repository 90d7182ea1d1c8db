"""genbench's conformance suite on this plugin's measure: `pytest plugins/genbench-param-norm/tests`."""

from genbench_param_norm import ParamNorm

from genbench.testing import check_measure


def test_frobenius_norm_keeps_the_measure_contract():
    values = check_measure(ParamNorm())
    squared = check_measure(ParamNorm(), ParamNorm.Options(squared=True))
    for architecture, value in values.items():
        assert abs(value**2 - squared[architecture]) <= 1e-9 * squared[architecture]
