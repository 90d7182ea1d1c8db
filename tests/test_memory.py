from __future__ import annotations

import torch
from torch import nn

from conftest import FAST_TRAIN
from genbench.engine import Engine, resolve_runs
from genbench.training.memory import activation_floats, ensemble_size, member_bytes
from genbench.schemas import ComponentRef, ExperimentSpec
from genbench.store import Store


def test_activation_count_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    # Flatten 64 + Linear 32 + ReLU 32 + Linear 10 floats per example
    assert activation_floats(model, (1, 8, 8), batch_size=4) == 4 * (64 + 32 + 32 + 10)


def test_member_bytes_counts_parameters_activations_and_own_inputs():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    shared = member_bytes(model, (1, 8, 8), batch_size=4, num_train=100, own_inputs=False)
    parameters = 64 * 32 + 32 + 32 * 10 + 10
    activations = max(3 * 4 * 138, 100 * 138)
    assert shared == (5 * parameters + activations) * 4 + 100 * 8
    own = member_bytes(model, (1, 8, 8), batch_size=4, num_train=100, own_inputs=True)
    assert own - shared == 100 * 64 * 4


def test_ensemble_size_bounds():
    assert ensemble_size(per_member=100, budget=1_000, ceiling=64) == 10
    assert ensemble_size(per_member=10_000, budget=1_000, ceiling=64) == 1
    assert ensemble_size(per_member=1, budget=10**9, ceiling=64) == 64


class CountMembers:
    def __init__(self) -> None:
        self.groups: list[int] = []

    def group_started(self, runs) -> None:
        self.groups.append(len(runs))

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def test_a_small_budget_splits_the_ensemble_and_results_do_not_change(tmp_path):
    spec = ExperimentSpec(models=[ComponentRef(name="mlp", options={"hidden": [32]})], levels=[0.0, 0.5, 1.0],
                          seeds=[0], train=FAST_TRAIN.model_copy(update={"max_steps": 30}))
    runs = resolve_runs(spec)
    model_bytes = member_bytes(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
                               (1, 8, 8), 128, 1348, own_inputs=False)
    split, whole = CountMembers(), CountMembers()
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        Engine(a, reporter=split, memory_budget=model_bytes + 1).train(runs)
        Engine(b, reporter=whole).train(runs)
        assert split.groups == [1, 1, 1] and whole.groups == [3]
        for run in runs:
            torch.testing.assert_close(a.load_checkpoint(run.run_id, "final")["1.weight"],
                                       b.load_checkpoint(run.run_id, "final")["1.weight"], rtol=1e-4, atol=1e-5)
