"""Scores that rank generalization measures against the observed generalization gap.

Every function here is pure (numpy/pandas/scipy only, no registry, no I/O) and works
on a ``pandas.DataFrame`` with one row per trained run: a column holding the value of
a generalization measure, a column holding the generalization gap, and one column per
hyperparameter *axis* (model name, corruption level, width, ...).

Implemented scores (one module each: ``kendall``, ``granulated``, ``sign_error``,
``mutual_information``, ``board``)
------------------
* :func:`kendall_tau` -- Kendall's tau-b (Kendall 1945), NaN-aware;
  :func:`grouped_kendall_tau` -- the same within many groups at once.
* :func:`granulated_kendall` -- Jiang et al. (ICLR 2020), "Fantastic
  generalization measures and where to find them", section 4.
* :func:`sign_error` -- Dziugaite et al. (NeurIPS 2020), "In search of robust
  measures of generalization".
* :func:`conditional_mutual_information` -- Jiang et al. (NeurIPS 2020
  competition), "NeurIPS 2020 Competition: Predicting Generalization in Deep
  Learning" (PGDL).
* :func:`rank_correlation_with`, :func:`noisy_oracle` -- small helpers.
* :func:`score_measures` -- the leaderboard's rows: every measure of a store's
  frames (``Store.runs()``, ``Store.measure_values()``) scored with the above.
"""

from genbench.scoring.board import (
    AXES,
    AXIOM_TOLERANCE,
    ORACLE_SEED,
    ORACLE_STDS,
    UNINFORMATIVE_AT_FULL,
    noisy_oracle,
    score_measures,
)
from genbench.scoring.granulated import granulated_kendall
from genbench.scoring.kendall import grouped_kendall_tau, kendall_tau, rank_correlation_with
from genbench.scoring.mutual_information import conditional_mutual_information
from genbench.scoring.sign_error import sign_error

__all__ = [
    "kendall_tau",
    "grouped_kendall_tau",
    "granulated_kendall",
    "sign_error",
    "conditional_mutual_information",
    "rank_correlation_with",
    "noisy_oracle",
    "score_measures",
    "AXES",
    "ORACLE_STDS",
    "ORACLE_SEED",
    "AXIOM_TOLERANCE",
    "UNINFORMATIVE_AT_FULL",
]
