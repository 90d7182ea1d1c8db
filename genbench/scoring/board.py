"""The leaderboard's rows: every measure of a store scored against the gap, with the noisy-oracle
reference rows (``score_measures``, a pure function of the store's two frames)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genbench.schemas import AXIOM_TOLERANCE, MeasureScore
from genbench.scoring.kendall import _GroupedTau, _float_column, _mean_in_order, _tau_without_nan
from genbench.scoring.granulated import _GranulatedGrid, _axis_codes


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

#: The grid axes of granulated Kendall, those that vary over the scored runs (not the seed).
AXES = ("dataset", "model", "corruption", "level", "train_config", "test_labels")
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


@dataclass
class _Variant:
    """One leaderboard row's values: a measure at one set of options, on the board's runs."""

    label: str
    name: str
    kind: str
    value: np.ndarray  # one per run, NaN where there is no "ok" value
    present: np.ndarray  # whether the run has a value row (of any status)
    seconds: np.ndarray  # of each value row


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
        result.append(_Variant(label, name, kind, run_values, present, seconds[chosen]))
    return result


class _Board:
    """What every row of one board shares: the runs' gap, levels, granulated-Kendall groups,
    corruption groups and the runs where a capability score must be 0."""

    def __init__(self, runs: pd.DataFrame) -> None:
        self.run_ids = pd.Index(runs["run_id"].to_numpy(dtype=object))
        self.gap = _float_column(runs, "gap")
        self.level = _float_column(runs, "level")
        axes = {axis: _axis_codes(runs[axis]) for axis in AXES if axis in runs.columns}
        self.grid = _GranulatedGrid({axis: codes for axis, codes in axes.items() if codes.max(initial=0) > 0}, self.gap)
        corruption_codes, corruptions = pd.factorize(runs["corruption"], sort=True)
        self.by_corruption = _GroupedTau(corruption_codes, len(corruptions), self.level)
        fallback = np.isclose(self.level, 1.0) & runs["corruption"].isin(UNINFORMATIVE_AT_FULL).to_numpy()
        recorded = _object_column(runs, "labels_uninformative")
        self.uninformative = np.where(pd.isna(recorded), fallback, recorded.astype(bool))

    def score(self, variant: _Variant, reference: bool = False) -> MeasureScore:
        raw, present = variant.value, variant.present
        kind = variant.kind
        oriented = -raw if kind == "capability" else raw
        psi, psi_axes = self.grid.score(oriented, present) if self.grid.axes else (float("nan"), {})
        axiom, axiom_value = "n/a", None
        if kind == "capability":
            at_one = raw[present & self.uninformative]
            if at_one.size and not np.isnan(at_one).all():
                axiom_value = _nan_mean(at_one)
                axiom = "pass" if abs(axiom_value) <= AXIOM_TOLERANCE else "fail"
        levels, values = self.level[present], raw[present]
        return MeasureScore(
            measure=variant.label,
            name=variant.name,
            kind="reference" if reference else kind,
            reference=reference,
            runs=int((~np.isnan(values)).sum()),
            tau_gap=_tau_without_nan(oriented, self.gap),
            psi=psi,
            psi_axes=psi_axes,
            tau_level=_mean_in_order(self.by_corruption.taus(oriented)),
            axiom=axiom,
            axiom_value=axiom_value,
            value_clean=_nan_mean(values[levels == levels.min()]) if levels.size else float("nan"),
            value_noise=_nan_mean(values[levels == levels.max()]) if levels.size else float("nan"),
            seconds_per_run=_nan_mean(variant.seconds),
        )

    def oracle(self, std: float) -> _Variant:
        """The reference row: the gap plus N(0, std^2), on every run, computed in no time."""
        values = noisy_oracle(self.gap, std, ORACLE_SEED)
        return _Variant(f"oracle σ={std}", "oracle", "complexity", values, np.ones(values.size, dtype=bool), np.zeros(1))


def score_measures(
    runs: pd.DataFrame, values: pd.DataFrame, *, kinds: Mapping[str, str] | None = None
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

    Reference rows (kind "reference"): the gap plus N(0, std^2) noise (:func:`noisy_oracle`,
    std in ``ORACLE_STDS``, seed ``ORACLE_SEED``) over all runs, scored as complexity.
    """
    if runs.empty:
        return []
    board = _Board(runs)
    scores = [board.score(variant) for variant in _variants(values, board.run_ids, kinds)]
    scores += [board.score(board.oracle(std), reference=True) for std in ORACLE_STDS]
    order = sorted(range(len(scores)), key=lambda i: (math.isnan(scores[i].tau_gap), -scores[i].tau_gap))
    return [scores[i] for i in order]
