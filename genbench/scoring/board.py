"""The leaderboard's rows: every measure of a store scored against the gap, with the noisy-oracle
reference rows (``score_measures``, a pure function of the store's two frames)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genbench.schemas import AXIOM_TOLERANCE, MeasureScore
from genbench.scoring.bootstrap import (
    BOOTSTRAP_SEED,
    REPLICATES,
    GroupedCellTau,
    _CellTau,
    cell_weights,
    mean_over_groups,
    percentile_interval,
)
from genbench.scoring.granulated import _GranulatedGrid, _axis_codes, _combined_codes
from genbench.scoring.kendall import _GroupedTau, _float_column, _mean_in_order, _tau_without_nan
from genbench.scoring.mutual_information import PairwiseCMI
from genbench.scoring.selection import recipes
from genbench.scoring.sign_error import EnvironmentPairs


# ---------------------------------------------------------------------------
# Reference predictors
# ---------------------------------------------------------------------------


def noisy_oracle(gap: Sequence[float] | np.ndarray, std: float, seed: int | None) -> np.ndarray:
    """The generalization gap plus Gaussian noise: ``gap + N(0, std^2)``.

    Jiang et al. (ICLR 2020), "Fantastic generalization measures", report such
    noisy oracles (std 0.01 and 0.05) as reference rows of their tables. Noise
    is drawn with ``numpy.random.default_rng(seed)``, so the same seed gives the
    same array.
    """
    if std < 0:
        raise ValueError(f"std must be non-negative, got {std}")
    gap_values = np.asarray(gap, dtype=float)
    rng = np.random.default_rng(seed)
    return gap_values + rng.normal(0.0, std, size=gap_values.shape)


# ---------------------------------------------------------------------------
# The leaderboard: every measure of a store scored against the gap
# ---------------------------------------------------------------------------

#: The grid axes of the axis-based scores, those that vary over the scored runs (not the seed);
#: the recipe (``train_config``) enters field by field, one axis ``train.<field>`` per field that varies.
AXES = ("dataset", "model", "corruption", "level", "train_config", "test_labels")
#: Dziugaite et al.'s effective-size filter of a sign-error environment.
SIGN_ERROR_MIN_EFFECTIVE_SIZE = 12.0
#: Fewer cells (settings of the axes) or runs than this and a board says nothing: it says so.
MIN_CELLS = 4
MIN_RUNS = 5
#: The reference rows: the true gap plus N(0, std^2), drawn with this seed.
ORACLE_STDS = (0.02, 0.05)
ORACLE_SEED = 0
#: A capability score passes the p_c = 1 check when |its mean| there is at most this.
#: The built-in corruptions that declare ``uninformative_at_full``: at level 1 their training
#: labels carry no information. Used for runs that do not record ``labels_uninformative``.
UNINFORMATIVE_AT_FULL = frozenset({"labels", "random-labels", "gaussian"})


def _nan_mean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries (nan if none), summed the way ``pandas.Series.mean`` sums."""
    missing = np.isnan(values)
    count = values.size - int(missing.sum())
    if count == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):  # inf + -inf is nan, as pandas has it
        return float(np.where(missing, 0.0, values).sum() / count)


def _label(name: str, options: Mapping[str, object], plain: bool) -> str:
    """``name``, or ``name[k=v,...]`` when its options must be told apart."""
    if plain:
        return name
    inner = ",".join(f"{key}={value}" for key, value in sorted(options.items()))
    return f"{name}[{inner}]"


def _object_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as an object array with None for missing entries (all None when absent)."""
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    values = frame[column].to_numpy(dtype=object)
    return np.where(pd.isna(values), None, values)


def _value_status(values: pd.DataFrame) -> np.ndarray:
    """The values' status; where it is missing (older stores), "failed" with an error or without a
    value, "ok" otherwise."""
    status = _object_column(values, "status")
    errors = _object_column(values, "error")
    healthy = pd.isna(errors) & ~pd.isna(values["value"].to_numpy(dtype=float, na_value=np.nan))
    return np.where(pd.isna(status), np.where(healthy, "ok", "failed"), status)


def _last_known(keys: np.ndarray, values: np.ndarray, order: np.ndarray) -> dict:
    """For every key, its last value other than None in ``order`` (keys with none absent)."""
    known = order[~pd.isna(values[order])]
    if not known.size:
        return {}
    chosen = pd.Series(values[known]).groupby(keys[known], sort=False).last()
    return dict(zip(chosen.index, chosen.to_numpy()))


#: The provenance columns of the values (``Store.measure_values()``), as ``MeasureScore`` names them.
PROVENANCE = ("plugin", "plugin_version", "genbench_version")


@dataclass
class _Variant:
    """One leaderboard row's values: a measure at one set of options, on the board's runs."""

    label: str
    name: str
    kind: str
    value: np.ndarray  # one per run, NaN where there is no "ok" value
    present: np.ndarray  # whether the run has a value row (of any status)
    seconds: np.ndarray  # of each value row
    provenance: dict[str, str | None] = field(default_factory=dict)  # PROVENANCE, as the scored rows recorded


def _recorded(cells: np.ndarray) -> str | None:
    """The distinct recorded entries of ``cells`` (ordered by creation), comma-separated; None if none."""
    known = pd.unique(cells[~pd.isna(cells)])  # in order of appearance
    return ", ".join(str(cell) for cell in known) if known.size else None


def _variants(values: pd.DataFrame, run_ids: pd.Index, kinds: Mapping[str, str] | None) -> list[_Variant]:
    """The values of each measure's newest version on the runs, one variant per label, by label.

    The newest version is that of the measure's most recently created value. Options are told
    apart by ``options_hash`` (the hash of the options). A variant is labelled plain when it
    holds the measure's default options, or, where that was not recorded, when the version
    has a single variant; a run valued twice under one label keeps its latest value. Values
    whose status is not "ok" are NaN (they count for ``seconds``)."""
    if values.empty:
        return []
    measures = values["measure"].to_numpy(dtype=object)
    created = values["created_at"].to_numpy(dtype=float)
    order = np.argsort(created, kind="stable")
    versions = values["version"].to_numpy(dtype=object)
    newest = pd.Series(versions[order]).groupby(measures[order], sort=False).last()
    latest = versions == pd.Series(measures).map(newest).to_numpy(dtype=object)
    stored_kinds = _last_known(measures, _object_column(values, "kind"), order)
    fallback_kinds = dict(kinds or {})

    rows = np.flatnonzero(latest)
    measure_codes, measure_names = pd.factorize(measures[rows])
    hash_codes, hash_names = pd.factorize(values["options_hash"].to_numpy(dtype=object)[rows])
    variant_codes, variant_keys = pd.factorize(measure_codes.astype(np.int64) * len(hash_names) + hash_codes)
    variant_names = [measure_names[key // len(hash_names)] for key in variant_keys]
    by_creation = np.argsort(created[rows], kind="stable")
    last_row = np.zeros(len(variant_keys), dtype=np.intp)
    last_row[variant_codes[by_creation]] = rows[by_creation]  # the most recent row of each variant
    defaults = _last_known(variant_codes, _object_column(values, "default_options")[rows], by_creation)
    variant_counts = pd.Series(variant_names).value_counts()

    provenance_columns = {column: _object_column(values, column) for column in PROVENANCE}
    options_column = values["options"].to_numpy(dtype=object)
    labels = []
    for code, name in enumerate(variant_names):
        default = defaults.get(code)
        plain = bool(default) if default is not None else variant_counts[name] == 1
        options = options_column[last_row[code]]
        labels.append(_label(name, options if isinstance(options, Mapping) else {}, plain))
    label_codes, label_names = pd.factorize(np.asarray(labels, dtype=object), sort=True)
    label_measure = {label_codes[code]: name for code, name in enumerate(variant_names)}

    positions = run_ids.get_indexer(values["run_id"].to_numpy(dtype=object)[rows])
    on_board = positions >= 0
    rows, positions = rows[on_board], positions[on_board]
    row_labels = label_codes[variant_codes[on_board]]
    status = _value_status(values)[rows]
    value = np.where(status == "ok", values["value"].to_numpy(dtype=float, na_value=np.nan)[rows], np.nan)
    # the cost of computing a value: skipped values (nothing computed) and failed ones do not count
    seconds = np.where(status == "ok", values["seconds"].to_numpy(dtype=float, na_value=np.nan)[rows], np.nan)
    # the latest value of each (label, run): ordered by creation, the last row of each key
    by_creation = np.argsort(created[rows], kind="stable")
    keys = row_labels[by_creation].astype(np.int64) * len(run_ids) + positions[by_creation]
    _, last_of_key = np.unique(keys[::-1], return_index=True)
    kept = by_creation[by_creation.size - 1 - last_of_key]  # sorted by (label, run)
    bounds = np.searchsorted(row_labels[kept], np.arange(len(label_names) + 1))

    result = []
    for code, label in enumerate(label_names):
        chosen = kept[bounds[code] : bounds[code + 1]]
        if not chosen.size:
            continue
        name = label_measure[code]
        kind = stored_kinds.get(name) or fallback_kinds.get(name) or "complexity"
        run_values = np.full(len(run_ids), np.nan)
        run_values[positions[chosen]] = value[chosen]
        present = np.zeros(len(run_ids), dtype=bool)
        present[positions[chosen]] = True
        in_order = rows[chosen][np.argsort(created[rows[chosen]], kind="stable")]
        provenance = {column: _recorded(cells[in_order]) for column, cells in provenance_columns.items()}
        result.append(_Variant(label, name, kind, run_values, present, seconds[chosen], provenance))
    return result


def grid_axes(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Integer codes of every axis of ``AXES`` in ``runs`` that varies, the recipe split into one
    axis per field (``train.lr``, ``train.weight_decay``, …): Jiang et al.'s hyperparameters."""
    axes: dict[str, np.ndarray] = {}
    for axis in AXES:
        if axis not in runs.columns:
            continue
        if axis == "train_config":
            for field, values in recipes(runs).items():
                codes = _axis_codes(values)
                if codes.max(initial=0) > 0:
                    axes[field] = codes
            continue
        codes = _axis_codes(runs[axis])
        if codes.max(initial=0) > 0:
            axes[axis] = codes
    return axes


class _Board:
    """What every row of one board shares: the runs' gap, levels, grid axes and cells, the groups
    of granulated Kendall, the environments of the sign-error, the conditioning sets of the
    mutual information, the bootstrap's draws, and the runs where a capability score must be 0."""

    def __init__(self, runs: pd.DataFrame, replicates: int = REPLICATES) -> None:
        self.run_ids = pd.Index(runs["run_id"].to_numpy(dtype=object))
        self.gap = _float_column(runs, "gap")
        self.level = _float_column(runs, "level")
        self.axes = grid_axes(runs)
        self.grid = _GranulatedGrid(self.axes, self.gap)
        self.cells, self.cell_count = _combined_codes(list(self.axes.values()), len(runs))
        corruption_codes, corruptions = pd.factorize(runs["corruption"], sort=True)
        self.corruption_codes = corruption_codes
        self.by_corruption = _GroupedTau(corruption_codes, len(corruptions), self.level)
        fallback = np.isclose(self.level, 1.0) & runs["corruption"].isin(UNINFORMATIVE_AT_FULL).to_numpy()
        recorded = _object_column(runs, "labels_uninformative")
        self.uninformative = np.where(pd.isna(recorded), fallback, recorded.astype(bool))
        # the axiom's second part compares levels within runs that agree on every other axis
        self.level_groups, _ = _combined_codes(
            [self.corruption_codes.astype(np.int64)] + [codes for axis, codes in self.axes.items() if axis != "level"],
            len(runs),
        )
        self.says_little = self.cell_count < MIN_CELLS or len(runs) < MIN_RUNS
        draws = 0 if self.says_little else replicates
        weights = cell_weights(self.cell_count, draws, BOOTSTRAP_SEED)
        self.overall_bootstrap = _CellTau(self.cells, self.gap, weights) if draws else None
        self.axis_bootstrap = {
            axis: GroupedCellTau(grouped.groups, grouped.group_count, self.cells, self.gap, self.axes[axis], weights)
            for axis, grouped in self.grid.by_axis.items()
        } if draws else {}
        self.mutual_information = PairwiseCMI(self.axes, self.gap)
        test_sizes = _float_column(runs, "num_test") if "num_test" in runs.columns else np.array([np.nan])
        self.test_size = float(np.nanmin(test_sizes)) if not np.isnan(test_sizes).all() else float("nan")
        self.environments = EnvironmentPairs(self.axes, self.gap, self.test_size, SIGN_ERROR_MIN_EFFECTIVE_SIZE)
        seeds_per_cell = np.bincount(self.cells, minlength=self.cell_count) if len(runs) else np.zeros(1, dtype=int)
        self.most_seeds = int(seeds_per_cell.max(initial=0))

    def _intervals(self, oriented: np.ndarray, present: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
        """95 % bootstrap intervals of tau_gap and Psi (NaN without a bootstrap)."""
        nan = (float("nan"), float("nan"))
        if self.overall_bootstrap is None:
            return nan, nan
        values = np.where(present, oriented, np.nan)
        tau = percentile_interval(self.overall_bootstrap.replicates(values))
        per_axis = []
        for axis, bootstrap in self.axis_bootstrap.items():
            axis_codes = self.axes[axis][present]
            if axis_codes.size == 0 or (axis_codes == axis_codes[0]).all():
                continue
            per_axis.append(mean_over_groups(bootstrap.replicates(values)))
        if not per_axis:
            return tau, nan
        stacked = np.vstack(per_axis)
        defined = ~np.isnan(stacked)
        with np.errstate(invalid="ignore"):
            psi = np.where(defined.any(axis=0), np.where(defined, stacked, 0.0).sum(axis=0) / np.maximum(defined.sum(axis=0), 1), np.nan)
        return tau, percentile_interval(psi)

    def _axiom(self, raw: np.ndarray, present: np.ndarray) -> dict:
        """Both parts of the corruption axiom for a capability score: ≈ 0 where the labels carry
        no information, and a mean per level that does not rise with p_c — within each group of
        runs that agree on every other axis (the corruption kind, the model, the recipe, …), so
        that a level's mean never mixes other runs than its neighbours'; the largest rise over
        the groups is reported."""
        result = {"axiom": "n/a", "axiom_value": None, "axiom_zero": "n/a", "axiom_monotone": "n/a", "axiom_rise": None}
        at_one = raw[present & self.uninformative]
        if at_one.size and not np.isnan(at_one).all():
            result["axiom_value"] = _nan_mean(at_one)
            result["axiom_zero"] = "pass" if abs(result["axiom_value"]) <= AXIOM_TOLERANCE else "fail"
        rises = []
        usable = present & ~np.isnan(raw)
        for group in np.unique(self.level_groups[usable]):
            chosen = usable & (self.level_groups == group)
            means = pd.Series(raw[chosen]).groupby(self.level[chosen]).mean().sort_index().to_numpy()
            if means.size >= 2:
                with np.errstate(invalid="ignore"):  # inf - inf is NaN: that step says nothing
                    steps = means[1:] - np.minimum.accumulate(means)[:-1]
                steps = steps[~np.isnan(steps)]
                if steps.size:
                    rises.append(float(steps.max()))
        if rises:
            result["axiom_rise"] = max(rises)
            result["axiom_monotone"] = "pass" if result["axiom_rise"] <= AXIOM_TOLERANCE else "fail"
        parts = (result["axiom_zero"], result["axiom_monotone"])
        result["axiom"] = "fail" if "fail" in parts else ("pass" if "pass" in parts else "n/a")
        return result

    def score(self, variant: _Variant, reference: bool = False) -> MeasureScore:
        raw, present = variant.value, variant.present
        kind = variant.kind
        oriented = -raw if kind == "capability" else raw
        psi, psi_axes = self.grid.score(oriented, present) if self.grid.axes else (float("nan"), {})
        (tau_low, tau_high), (psi_low, psi_high) = self._intervals(oriented, present)
        signs = self.environments.score(np.where(present, oriented, np.nan))
        levels, values = self.level[present], raw[present]
        return MeasureScore(
            measure=variant.label,
            name=variant.name,
            kind="reference" if reference else kind,
            reference=reference,
            runs=int((~np.isnan(values)).sum()),
            runs_total=len(self.run_ids),
            tau_gap=_tau_without_nan(oriented, self.gap),
            tau_gap_low=tau_low,
            tau_gap_high=tau_high,
            psi=psi,
            psi_low=psi_low,
            psi_high=psi_high,
            psi_axes=psi_axes,
            cmi=self.mutual_information.score(np.where(present, raw, np.nan)),
            sign_error_mean=signs["mean"],
            sign_error_p90=signs["p90"],
            sign_error_max=signs["max"],
            sign_error_environments=signs["environments"],
            tau_level=_mean_in_order(self.by_corruption.taus(oriented)),
            **self._axiom(raw, present) if kind == "capability" else {"axiom": "n/a"},
            value_clean=_nan_mean(values[levels == levels.min()]) if levels.size else float("nan"),
            value_noise=_nan_mean(values[levels == levels.max()]) if levels.size else float("nan"),
            seconds_per_run=_nan_mean(variant.seconds),
            **variant.provenance,
        )

    def oracle(self, std: float) -> _Variant:
        """The reference row: the gap plus N(0, std^2), on every run, computed in no time."""
        values = noisy_oracle(self.gap, std, ORACLE_SEED)
        return _Variant(f"oracle σ={std}", "oracle", "complexity", values, np.ones(values.size, dtype=bool), np.zeros(1))

    def notes(self, scores: list[MeasureScore]) -> list[str]:
        """What the board's reader must know to read it: too little to say anything, scores that
        no run of this grid can give, rows scored on fewer runs than the others."""
        notes = []
        if self.says_little:
            notes.append(
                f"Only {len(self.run_ids)} runs in {self.cell_count} cells (settings of the grid's axes): too few for "
                f"τ or Ψ to say anything (at least {MIN_RUNS} runs and {MIN_CELLS} cells; two runs give every row "
                "τ = ±1), so the board has no intervals."
            )
        if math.isnan(self.test_size):
            notes.append("Sign-error: the runs do not record their test-set size, which its noise filter needs.")
        elif self.most_seeds ** 2 < SIGN_ERROR_MIN_EFFECTIVE_SIZE:
            notes.append(
                f"Sign-error: no environment can pass the effective-size filter (≥ {SIGN_ERROR_MIN_EFFECTIVE_SIZE:g}; "
                "an environment pairs the seeds of two configurations, so it needs their seed counts' product to "
                f"reach it, e.g. 4 and 3; this grid has at most {self.most_seeds} seed"
                f"{'s' if self.most_seeds != 1 else ''} per configuration)."
            )
        partial = [score.measure for score in scores if score.partial]
        if partial:
            notes.append(
                f"Scored on fewer runs than the best-covered measure (runs column, marked *): {', '.join(partial)}."
            )
        return notes


def score_measures(
    runs: pd.DataFrame, values: pd.DataFrame, *, kinds: Mapping[str, str] | None = None,
    bootstrap: int = REPLICATES,
) -> list[MeasureScore]:
    """The leaderboard's rows: every measure in ``values`` scored against the gap of ``runs``,
    plus the noisy-oracle reference rows, best ``tau_gap`` first (NaN last; ties keep the
    order by label, the references after the measures).

    ``runs`` and ``values`` are the frames of ``Store.runs()`` and ``Store.measure_values()``
    (``values`` may lack ``status``, ``kind`` and ``default_options``, as older stores do).
    A pure function: nothing is read from the plugin registry or the disk.

    Rows: one per distinct options of each measure's newest version (the version of its most
    recently created value), labelled ``name`` at the default options (``default_options``
    True) and ``name[k=v,...]`` otherwise; where ``default_options`` was not recorded, plain
    when the version has a single options variant. Values of runs not in ``runs`` are ignored;
    only values with status "ok" are scored.

    Per row, over the runs that have a value row of it:

    * ``kind``: the values' recorded ``kind``; for a measure that recorded none (an older
      store) ``kinds[name]`` if given, else "complexity". A capability score predicts a
      *smaller* gap, so every correlation below is taken with its negation: larger is
      better for every row.
    * ``tau_gap``: Kendall tau-b with the gap over all runs (:func:`kendall_tau`).
    * ``psi``, ``psi_axes``: granulated Kendall Psi and its psi per axis
      (:func:`granulated_kendall`) over the axes of ``AXES`` that vary over ``runs``
      (an axis constant over the row's runs is left out). The groups of every axis depend
      only on ``runs``: they are built once and serve every row.
    * ``tau_level``: tau-b with p_c within each corruption kind, averaged over the kinds
      where it is defined.
    * ``axiom``: for a capability score, "pass" when the mean of its values over the runs
      whose training labels carry no information is within ``AXIOM_TOLERANCE`` of 0, else
      "fail" ("n/a" for complexity scores or without such runs); ``axiom_value`` that mean.
      The runs are those whose ``labels_uninformative`` is True; for a run that did not
      record it (None or no column, older stores), those of a corruption in
      ``UNINFORMATIVE_AT_FULL`` (labels, random-labels, gaussian: the built-in corruptions
      that declare ``uninformative_at_full``) at level 1.0.
    * ``value_clean``, ``value_noise``: mean value at the lowest and the highest level.
    * ``runs``: how many values were scored; ``seconds_per_run``: mean seconds of its "ok"
      values (what computing a value cost; failed and skipped ones are left out).
    * ``plugin``, ``plugin_version``, ``genbench_version``: the provenance the row's values recorded
      (the distribution that registered the measure, its version, the genbench that computed them;
      several comma-separated, oldest first; None where no value recorded it: older stores, or
      ``values`` without those columns).

    Reference rows (kind "reference"): the gap plus N(0, std^2) noise (:func:`noisy_oracle`,
    std in ``ORACLE_STDS``, seed ``ORACLE_SEED``) over all runs, scored as complexity.
    """
    return score_board(runs, values, kinds=kinds, bootstrap=bootstrap)[0]


def score_board(
    runs: pd.DataFrame, values: pd.DataFrame, *, kinds: Mapping[str, str] | None = None,
    bootstrap: int = REPLICATES,
) -> tuple[list[MeasureScore], list[str]]:
    """``score_measures``' rows and the board's notes (see ``_Board.notes``)."""
    if runs.empty:
        return [], []
    board = _Board(runs, bootstrap)
    scores = [board.score(variant) for variant in _variants(values, board.run_ids, kinds)]
    most = max((score.runs for score in scores), default=0)
    scores = [score.model_copy(update={"partial": score.runs < most}) for score in scores]
    scores += [board.score(board.oracle(std), reference=True) for std in ORACLE_STDS]
    order = sorted(range(len(scores)), key=lambda i: (math.isnan(scores[i].tau_gap), -scores[i].tau_gap))
    scores = [scores[i] for i in order]
    return scores, board.notes(scores)
