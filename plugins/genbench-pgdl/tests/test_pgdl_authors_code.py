"""`label-variation` against a numpy port of the authors' own code, and `dbi-mixup`'s index
against the authors' Davies–Bouldin conventions.

The port below follows, operation for operation and in float32 as TensorFlow computes it, the
functions ``get_distances``, ``RBF``, ``knn_tf``, ``generate_laplacian`` and ``smoothness`` of
github.com/cadurosar/pgdl, VPM_1/complexity.py (the PGDL 2020 3rd-place submission "VPM (G=1)"),
and the sampling and input mixup of its ``complexity`` and ``mixup_output``. That code is
released under the MIT License:

    Copyright (c) 2020 Carlos Eduardo Rosar Kós Lassance
    Permission is hereby granted, free of charge, to any person obtaining a copy of this software
    and associated documentation files (the "Software"), to deal in the Software without
    restriction, including without limitation the rights to use, copy, modify, merge, publish,
    distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
    Software is furnished to do so, subject to the following conditions: The above copyright
    notice and this permission notice shall be included in all copies or substantial portions of
    the Software. THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.

The winner's repository (github.com/parthnatekar/pgdl) carries no licence, so its code is not
copied here; test_pgdl_measures.py re-implements its procedure instead, and the index's
conventions are checked below.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from genbench_pgdl import LabelVariation, davies_bouldin
from torch import nn

import genbench

F32 = np.float32


# --------------------------------------------------------------------------- port (float32)
def l2_normalize(x):  # tf.math.l2_normalize(x, axis=1)
    return x * (1.0 / np.sqrt(np.maximum((x * x).sum(axis=1, keepdims=True), F32(1e-12)))).astype(F32)


def get_distances(a):
    r = (a * a).sum(axis=1).reshape(-1, 1)
    return r - F32(2) * (a @ a.T) + r.T


def rbf(values):
    distances = get_distances(values)
    gamma = F32(1) / (F32(3) * np.abs(distances.std(dtype=F32)))
    return np.exp(-gamma * distances).astype(F32)


def knn_tf(matrix, k):
    values = -np.sort(-matrix, axis=1)[:, : k + 1]  # tf.nn.top_k(matrix, k + 1, sorted=True)
    thresholds = values[:, -1].reshape(-1, 1)
    adjacency = (matrix >= thresholds).astype(F32)
    np.fill_diagonal(adjacency, 0)
    return np.clip(adjacency, 0, 1)


def generate_laplacian(values, k=1):
    values = l2_normalize(values.reshape(values.shape[0], -1))
    adjacency = knn_tf(rbf(values), k)
    degree = np.diag(adjacency.sum(axis=1) ** F32(-0.5))
    return np.eye(len(adjacency), dtype=F32) - degree @ (adjacency @ degree)


def smoothness(laplacian, targets):
    value = np.trace(targets.T @ laplacian @ targets)
    return float(np.clip(value / (2 * 2 * 500), 0, 1000))


# --------------------------------------------------------------------------- the run
def test_label_variation_equals_the_ported_authors_code():
    classes, n = 10, 600  # 60 examples a class: 500 // 10 = 50 nodes each, 500 in all, as in PGDL
    g = torch.Generator().manual_seed(11)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
    torch.manual_seed(12)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, classes))
    model.eval()
    ctx = genbench.MeasureContext(
        spec=None, model=model, initial_model=None, train_inputs=x, train_labels=y, num_classes=classes,
        training_log=None, device=torch.device("cpu"), generator=torch.Generator().manual_seed(13),
    )
    result = LabelVariation().compute(ctx, LabelVariation.Options())

    # the authors' complexity(): 500 // classes examples of each class, input mixup with α = 2,
    # features = the input of the last layer; the same draws, taken from the generator in the
    # documented order (λ from its uniforms through the Beta(2, 2) quantile function).
    from scipy.special import betaincinv

    r = torch.Generator().manual_seed(13)
    nodes = []
    for c in range(classes):
        members = torch.nonzero(y == c).flatten()
        nodes += members[torch.randperm(len(members), generator=r)[: 500 // classes]].tolist()
    indexes = torch.randperm(500, generator=r).numpy()
    lbda = betaincinv(2.0, 2.0, torch.rand(500, generator=r, dtype=torch.float64).numpy()).astype(F32).reshape(-1, 1)
    inputs = x.numpy()[nodes].reshape(500, -1)
    mixed = lbda * inputs + (F32(1) - lbda) * inputs[indexes]
    one_hot = np.eye(int(y[nodes].max()) + 1, dtype=F32)[y.numpy()[nodes]]
    one_hot = lbda * one_hot + (F32(1) - lbda) * one_hot[indexes]
    w = [m.weight.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    b = [m.bias.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    penultimate = np.maximum(np.maximum(mixed @ w[0].T + b[0], 0) @ w[1].T + b[1], 0)
    authors = smoothness(generate_laplacian(penultimate, k=1), one_hot)
    from genbench_pgdl import knn_adjacency

    same_graph = knn_adjacency(torch.from_numpy(penultimate), 1).numpy()
    assert np.array_equal(same_graph, knn_tf(rbf(l2_normalize(penultimate)), 1))

    print(f"label-variation {result.value:.9f} vs the authors' code (float32 port) {authors:.9f}")
    assert result.details["nodes"] == 500
    assert result.value == pytest.approx(authors, rel=1e-5)


def test_davies_bouldin_follows_the_authors_conventions():
    """complexityDB's db(): the mean over clusters of the worst (S_a + S_b)/‖c_a − c_b‖, and 0
    when every cluster is a single point."""
    features = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0], [0.0, 9.0]])
    labels = np.array([0, 0, 1, 1, 2])
    # S = (1, 2, 0); centroids (1, 0), (10, 2), (0, 9)
    d01, d02, d12 = np.hypot(9, 2), np.hypot(1, 9), np.hypot(10, 7)
    expected = np.mean([max(3 / d01, 1 / d02), max(3 / d01, 2 / d12), max(1 / d02, 2 / d12)])
    assert davies_bouldin(features, labels) == pytest.approx(expected, rel=1e-12)
    assert davies_bouldin(np.array([[1.0], [1.0], [3.0], [3.0]]), np.array([0, 0, 1, 1])) == 0.0
