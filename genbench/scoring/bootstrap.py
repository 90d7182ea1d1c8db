"""Bootstrap intervals for Kendall's tau-b and granulated Kendall's Psi over the grid's cells.

A *cell* is a setting of every grid axis: the runs in it differ only by seed. One bootstrap
replicate draws as many cells as the board has, uniformly with replacement (the seeds of a
cell travel together), and scores the measure on the pairs of runs of the drawn cells (Efron
1979; the cluster bootstrap of Davison & Hinkley 1997, §3.8). The interval is the 2.5 and
97.5 percentiles of the defined replicates (at least half must be defined).

A pair statistic needs one care under a cluster bootstrap: a cell drawn w_c times holds w_c²
copies of each pair of its seeds, while two different cells drawn once each share one pair —
on average the seed-to-seed pairs would weigh twice what they weigh in the data, and pull
every replicate towards their (weak) concordance. So a replicate leaves out the pairs between
two draws of one cell (as it leaves out a run paired with its own copy): each draw of a cell
brings its own seed pairs once.

No replicate is built as data. With w_c the number of times cell c was drawn, Kendall's
tau-b of a replicate is

    tau_b = S / sqrt(U_x * U_y),   S = 1/2 (w' M w − Σ_c (w_c² − w_c) M[c, c]),

where M[c, d] = sum over runs i in c, j in d, i != j of sign(x_i - x_j) * sign(y_i - y_j),
and U_x, the replicate's pairs untied in x, is C(N, 2) minus the sum over distinct values v of
x of C(W_v, 2) (N the replicate's number of runs, W_v those whose x is v), less the same
correction with the within-cell counts of pairs whose x differ. So every replicate is one
quadratic form, and a thousand of them are one matrix product per measure. The quadratic forms
are taken in float32: a replicate's tau may differ from the float64 one in the seventh digit,
which no percentile notices.
"""

from __future__ import annotations

import math

import numpy as np

from genbench.choices import REPLICATES  # replicates drawn per board unless told otherwise; 0 draws none
from genbench.scoring.kendall import cell_pair_sums

#: The seed of the draw: the same board gives the same intervals.
BOOTSTRAP_SEED = 0
#: Rows of a pairwise sign block: bounds the memory of one block at a few MB.
_MAX_PAIRS_PER_BLOCK = 4_000_000
#: Groups with more rows than this are bootstrapped one at a time (``_CellTau``).
_LARGE_GROUP = 256


def cell_weights(cells: int, replicates: int, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """How often each of ``cells`` cells is drawn in each replicate: a (replicates, cells)
    float32 array whose rows are multinomial(cells, uniform) draws."""
    if cells == 0 or replicates == 0:
        return np.zeros((replicates, cells), dtype=np.float32)
    rng = np.random.default_rng(seed)
    return rng.multinomial(cells, np.full(cells, 1.0 / cells), size=replicates).astype(np.float32)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The (lower, upper) percentile interval of the defined replicates; NaN when fewer than
    half of them are defined (the statistic is mostly undefined on resampled grids)."""
    defined = replicates[~np.isnan(replicates)]
    if defined.size == 0 or defined.size * 2 < replicates.size:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return float(low), float(high)


def _signs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """sign(left - right) as int8 by comparisons (NaN: 0; equal infinities: 0)."""
    return (left > right).view(np.int8) - (left < right).view(np.int8)


def _pairs_untied(run_weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per replicate, the pairs of the multiset of runs (run i counted run_weights[:, i] times)
    whose ``values`` differ: C(N, 2) - sum over distinct values v of C(W_v, 2)."""
    total = run_weights.sum(axis=1, dtype=np.float64)
    codes, inverse = np.unique(values, return_inverse=True)
    if codes.size == values.size:  # no ties: only copies of one run are tied
        tied = (run_weights.astype(np.float64) * (run_weights - 1.0)).sum(axis=1) / 2.0
    else:
        order = np.argsort(inverse, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
        per_value = np.add.reduceat(run_weights[:, order].astype(np.float64), starts, axis=1)
        tied = (per_value * (per_value - 1.0)).sum(axis=1) / 2.0
    return total * (total - 1.0) / 2.0 - tied


def _untied_within_cells(values: np.ndarray, cells: np.ndarray, count: int) -> np.ndarray:
    """Per cell, the ordered pairs of its runs (i != j) whose ``values`` differ: n_c² − Σ_v n_{c,v}²."""
    sizes = np.bincount(cells, minlength=count).astype(np.float64)
    _, value_codes = np.unique(values, return_inverse=True)
    spread = int(value_codes.max()) + 1
    keys, joint_sizes = np.unique(cells.astype(np.int64) * spread + value_codes, return_counts=True)
    tied = np.bincount(keys // spread, weights=joint_sizes.astype(np.float64) ** 2, minlength=count)
    return sizes**2 - tied


class _CellTau:
    """Bootstrap replicates of tau-b between any ``x`` and a fixed ``y`` over one set of runs,
    resampling their cells (see the module docstring); optionally the replicate must draw two
    different ``distinct`` codes, else its tau is NaN (granulated Kendall's condition that the
    group's axis varies)."""

    def __init__(self, cells: np.ndarray, y: np.ndarray, weights: np.ndarray, distinct: np.ndarray | None = None) -> None:
        order = np.argsort(cells, kind="stable")
        self.order = order
        self.cells = np.asarray(cells)[order]
        self.y = np.asarray(y, dtype=float)[order]
        self.weights = weights  # (B, all cells)
        self.distinct = None if distinct is None else np.asarray(distinct)[order]

    def replicates(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)[self.order]
        present = ~(np.isnan(x) | np.isnan(self.y))
        replicates = self.weights.shape[0]
        if present.sum() < 2:
            return np.full(replicates, np.nan)
        x, y, cells = x[present], self.y[present], self.cells[present]
        used, local = np.unique(cells, return_inverse=True)
        (concordance,) = cell_pair_sums(
            local, lambda start, stop: [_signs(x[start:stop, None], x[None, :]) * _signs(y[start:stop, None], y[None, :])]
        )
        cell_weights_used = self.weights[:, used]
        repeats = cell_weights_used.astype(np.float64) * (cell_weights_used - 1.0)  # w_c² − w_c
        numerator = 0.5 * np.einsum("bc,bc->b", cell_weights_used @ concordance.astype(np.float32), cell_weights_used,
                                    dtype=np.float64)
        numerator -= 0.5 * repeats @ np.diag(concordance).astype(np.float64)
        run_weights = cell_weights_used[:, local]
        untied_x = _pairs_untied(run_weights, x) - 0.5 * repeats @ _untied_within_cells(x, local, used.size)
        untied_y = _pairs_untied(run_weights, y) - 0.5 * repeats @ _untied_within_cells(y, local, used.size)
        defined = (untied_x > 0) & (untied_y > 0)
        if self.distinct is not None:
            codes, code_index = np.unique(self.distinct[present], return_inverse=True)
            drawn = np.zeros((replicates, codes.size))
            np.add.at(drawn.T, code_index, run_weights.T)
            defined &= (drawn > 0).sum(axis=1) >= 2
        taus = np.full(replicates, np.nan)
        taus[defined] = numerator[defined] / np.sqrt(untied_x[defined]) / np.sqrt(untied_y[defined])
        return np.clip(taus, -1.0, 1.0)


class _GroupBlock:
    """Groups of at most ``width`` runs and ``cells`` cells, padded: what one pass of numpy covers.

    Per group, the pairs' signs in y and which pairs differ in the axis are kept at run level;
    ``onehot[g, r, k]`` places run r of group g in its k-th cell, ``cell_ids`` names the cells."""

    def __init__(self, groups: np.ndarray, rows: np.ndarray, cells: np.ndarray, y: np.ndarray, distinct: np.ndarray) -> None:
        self.groups, self.rows = groups, rows  # (G,), (G, width) with padding pointing at the extra row
        padded_cells = cells[rows]  # the extra row's cell is -1
        self.cell_ids = np.full((rows.shape[0], rows.shape[1]), -1, dtype=np.intp)
        self.onehot = np.zeros((rows.shape[0], rows.shape[1], rows.shape[1]), dtype=np.float32)
        for g in range(rows.shape[0]):
            real = padded_cells[g] >= 0
            used, local = np.unique(padded_cells[g][real], return_inverse=True)
            self.cell_ids[g, : used.size] = used
            self.onehot[g, np.flatnonzero(real), local] = 1.0
        width = int((self.cell_ids >= 0).sum(axis=1).max())
        self.cell_ids, self.onehot = self.cell_ids[:, :width], self.onehot[:, :, :width]
        y_rows = y[rows]
        self.y_present = ~np.isnan(y_rows)
        self.y_sign = _signs(y_rows[:, :, None], y_rows[:, None, :])
        d_rows = distinct[rows]
        self.axis_differs = (d_rows[:, :, None] != d_rows[:, None, :]).astype(np.int8)

    def to_cells(self, pair_counts: np.ndarray) -> np.ndarray:
        """Run-pair counts (G, width, width) summed into cell pairs (G, cells, cells)."""
        left = np.matmul(self.onehot.transpose(0, 2, 1), pair_counts.astype(np.float32))
        return np.matmul(left, self.onehot)

    def quadratic(self, weights: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """(B, G): 1/2 (w_g' M_g w_g − Σ_k (w_k² − w_k) M_g[k, k]) with each group's cell weights w_g:
        the pairs of the replicate, without those between two draws of one cell."""
        group_weights = np.where(self.cell_ids >= 0, weights[:, np.maximum(self.cell_ids, 0)], 0.0)  # (B, G, k)
        per_group = group_weights.transpose(1, 0, 2)  # (G, B, k)
        full = np.einsum("gbk,gbk->bg", np.matmul(per_group, matrices), per_group, dtype=np.float64)
        repeats = group_weights.astype(np.float64) * (group_weights - 1.0)
        within = np.einsum("bgk,gk->bg", repeats, np.diagonal(matrices, axis1=1, axis2=2).astype(np.float64))
        return 0.5 * (full - within)


class GroupedCellTau:
    """Bootstrap replicates of tau-b of any ``x`` against a fixed ``y`` within every group of a
    fixed partition (granulated Kendall's groups of one axis), resampling the board's cells.
    A group's tau in a replicate is NaN unless the replicate draws two of its cells with
    different values of the axis (``distinct``), as the point estimate requires."""

    def __init__(self, groups: np.ndarray, group_count: int, cells: np.ndarray, y: np.ndarray,
                 distinct: np.ndarray, weights: np.ndarray) -> None:
        self.group_count, self.weights = int(group_count), weights
        groups = np.asarray(groups, dtype=np.intp)
        y = np.asarray(y, dtype=float)
        rows = groups.size
        member = np.flatnonzero(groups >= 0)
        order = member[np.argsort(groups[member], kind="stable")]
        sorted_groups = groups[order]
        starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if order.size else order
        lengths = np.diff(np.r_[starts, order.size])
        group_ids = sorted_groups[starts]
        cells_padded = np.append(np.asarray(cells, dtype=np.intp), -1)
        y_padded = np.append(y, np.nan)
        distinct_padded = np.append(np.asarray(distinct, dtype=np.int64), -1)
        self.blocks: list[_GroupBlock] = []
        small = (lengths >= 2) & (lengths <= _LARGE_GROUP)
        for width in np.unique(lengths[small]):
            every = np.flatnonzero(small & (lengths == width))
            replicates = max(1, weights.shape[0])
            per_block = max(1, min(_MAX_PAIRS_PER_BLOCK // int(width) ** 2, _MAX_PAIRS_PER_BLOCK // (replicates * int(width))))
            for chosen in np.array_split(every, math.ceil(every.size / per_block)):
                block_rows = order[starts[chosen][:, None] + np.arange(width)[None, :]]
                self.blocks.append(_GroupBlock(group_ids[chosen], block_rows, cells_padded, y_padded, distinct_padded))
        self.large = [
            (int(group_ids[i]), order[starts[i] : starts[i] + lengths[i]]) for i in np.flatnonzero(lengths > _LARGE_GROUP)
        ]
        self.cells, self.y, self.distinct, self.rows = np.asarray(cells), y, np.asarray(distinct), rows

    def replicates(self, x: np.ndarray) -> np.ndarray:
        """(B, groups): each group's tau-b in each replicate (NaN where undefined)."""
        x = np.asarray(x, dtype=float)
        taus = np.full((self.weights.shape[0], self.group_count), np.nan)
        x_padded = np.append(x, np.nan)
        for block in self.blocks:
            x_rows = x_padded[block.rows]
            present = ~np.isnan(x_rows) & block.y_present
            both = (present[:, :, None] & present[:, None, :]).view(np.int8)
            x_sign = _signs(x_rows[:, :, None], x_rows[:, None, :])
            concordance = block.quadratic(self.weights, block.to_cells(x_sign * block.y_sign))
            untied_x = block.quadratic(self.weights, block.to_cells((x_sign != 0).view(np.int8) * both))
            untied_y = block.quadratic(self.weights, block.to_cells((block.y_sign != 0).view(np.int8) * both))
            differs = block.quadratic(self.weights, block.to_cells(block.axis_differs * both))
            defined = (untied_x > 0.5) & (untied_y > 0.5) & (differs > 0.5)
            tau = np.where(defined, concordance / np.sqrt(np.where(defined, untied_x * untied_y, 1.0)), np.nan)
            taus[:, block.groups] = np.clip(tau, -1.0, 1.0)
        for group, rows in self.large:
            single = _CellTau(self.cells[rows], self.y[rows], self.weights, self.distinct[rows])
            taus[:, group] = single.replicates(x[rows])
        return taus


def mean_over_groups(taus: np.ndarray) -> np.ndarray:
    """Per replicate, the mean of the defined group taus (NaN where none is defined)."""
    defined = ~np.isnan(taus)
    counts = defined.sum(axis=1)
    sums = np.where(defined, taus, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
