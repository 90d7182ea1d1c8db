from __future__ import annotations

import torch

from genbench.corruptions import corrupt_labels
from genbench.datasets import Digits, DigitsOptions
from genbench.training.early_stopping import held_out_size, validation_split
from genbench.models.mlp import MLPOptions, MultilayerPerceptron
from genbench.schemas import ComponentRef, ExperimentSpec, RunResult, TrainConfig
from genbench.training import EnsembleTrainer

DIGITS = Digits().load(DigitsOptions())
CONFIG = TrainConfig(lr=0.1, schedule="constant", max_steps=600, batch_size=64, early_stopping_patience=3)


def build():
    return MultilayerPerceptron().build(DIGITS.input_shape, 10, MLPOptions(hidden=[64]))


def noisy_labels(levels, seeds):
    return torch.stack([corrupt_labels(DIGITS.y_train, 10, p, s) for p, s in zip(levels, seeds)])


def everything(num_members: int) -> torch.Tensor:
    return torch.arange(DIGITS.num_train).expand(num_members, -1)


def test_new_fields_leave_run_ids_of_earlier_specs_unchanged():
    plain = TrainConfig().model_dump(mode="json")
    assert "early_stopping_patience" not in plain and "validation_fraction" not in plain
    dumped = TrainConfig(early_stopping_patience=5, validation_fraction=0.2).model_dump(mode="json")
    assert dumped["early_stopping_patience"] == 5 and dumped["validation_fraction"] == 0.2
    spec = ExperimentSpec(train=TrainConfig(lr=0.05, schedule="constant", max_steps=5_000))
    stopped = ExperimentSpec(train=TrainConfig(lr=0.05, schedule="constant", max_steps=5_000, early_stopping_patience=5))
    assert {r.run_id for r in spec.expand()} == {r.run_id for r in ExperimentSpec().expand()}
    assert not {r.run_id for r in spec.expand()} & {r.run_id for r in stopped.expand()}


def test_the_split_is_seeded_disjoint_and_a_function_of_the_members_own_seed_and_row():
    kept, held = validation_split(everything(3), [4, 5, 4], 0.1)
    assert held.shape == (3, held_out_size(DIGITS.num_train, 0.1)) == (3, 135)
    assert kept.shape == (3, DIGITS.num_train - 135)
    for row in range(3):
        assert not set(kept[row].tolist()) & set(held[row].tolist())
        assert sorted(kept[row].tolist() + held[row].tolist()) == list(range(DIGITS.num_train))
    assert torch.equal(held[0], held[2]) and not torch.equal(held[0], held[1])
    alone_kept, alone_held = validation_split(everything(1), [5], 0.1)
    assert torch.equal(alone_held[0], held[1]) and torch.equal(alone_kept[0], kept[1])


def test_a_member_trained_alone_equals_itself_inside_an_ensemble_with_early_stopping():
    seeds = [0, 0, 1]  # members 0 and 1 share a seed, hence their minibatches
    labels = noisy_labels([0.0, 0.4, 0.2], seeds)
    together = EnsembleTrainer(CONFIG).fit(build, DIGITS.x_train, labels, seeds)
    alone = EnsembleTrainer(CONFIG).fit(build, DIGITS.x_train, labels[1:2], seeds[1:2])[0]
    assert together[1].status == alone.status == "early-stopped"
    assert together[1].steps == alone.steps
    assert together[1].validation_accuracy == alone.validation_accuracy
    for name, value in alone.final_state.items():
        torch.testing.assert_close(together[1].final_state[name], value, rtol=1e-4, atol=1e-5)


def test_held_out_examples_never_enter_a_training_minibatch():
    seeds = [3, 7]
    _, held = validation_split(everything(2), seeds, 0.1)
    inputs = torch.stack([DIGITS.x_train, DIGITS.x_train.clone()])
    for member in range(2):
        inputs[member, held[member]] = float("nan")  # one such example in a minibatch makes the loss NaN
    labels = noisy_labels([0.0, 0.5], seeds)
    config = CONFIG.model_copy(update={"early_stopping_patience": 1000, "max_steps": 200})
    outcomes = EnsembleTrainer(config).fit(build, inputs, labels, seeds, per_member_inputs=True)
    assert [o.status for o in outcomes] == ["budget", "budget"]
    assert all(torch.isfinite(v).all() for o in outcomes for v in o.final_state.values())
    unguarded = EnsembleTrainer(config.model_copy(update={"early_stopping_patience": None}))
    assert {o.status for o in unguarded.fit(build, inputs, labels, seeds, per_member_inputs=True)} == {"diverged"}


def test_random_labels_stop_long_before_they_are_fitted():
    def wide():
        return MultilayerPerceptron().build(DIGITS.input_shape, 10, MLPOptions(hidden=[512]))

    seeds = [0, 1]
    labels = noisy_labels([1.0, 1.0], seeds)
    base = TrainConfig(lr=0.05, schedule="constant", max_steps=3000)
    fitted = EnsembleTrainer(base).fit(wide, DIGITS.x_train, labels[:1], seeds[:1])[0]
    stopped = EnsembleTrainer(base.model_copy(update={"early_stopping_patience": 3})).fit(
        wide, DIGITS.x_train, labels, seeds
    )
    assert fitted.status == "converged"
    for outcome in stopped:
        assert outcome.status == "early-stopped"
        assert outcome.steps < fitted.steps / 3
        assert outcome.train_accuracy < 0.6
        assert outcome.validation_accuracy < 0.25  # chance is 0.1: nothing to generalize from


def test_the_kept_weights_are_those_of_the_best_held_out_epoch():
    seeds = [2]
    labels = noisy_labels([0.3], seeds)
    outcome = EnsembleTrainer(CONFIG).fit(build, DIGITS.x_train, labels, seeds)[0]
    kept, held = validation_split(everything(1), seeds, CONFIG.validation_fraction)
    model = build()
    model.load_state_dict(outcome.final_state)
    with torch.no_grad():
        held_accuracy = (model(DIGITS.x_train[held[0]]).argmax(-1) == labels[0, held[0]]).float().mean().item()
        train_accuracy = (model(DIGITS.x_train[kept[0]]).argmax(-1) == labels[0, kept[0]]).float().mean().item()
    assert abs(held_accuracy - outcome.validation_accuracy) < 1e-6
    assert abs(train_accuracy - outcome.train_accuracy) < 1e-6
    # the best epoch came `patience` epochs before the stop, and the loss curve went on
    steps_per_epoch = -(-kept.shape[1] // CONFIG.batch_size)
    assert outcome.loss_curve[-1][0] == outcome.steps
    assert outcome.steps >= (CONFIG.early_stopping_patience + 1) * steps_per_epoch
    # replay independently: the same member trained on the kept examples without early
    # stopping, epoch by epoch; the kept weights are those of the first best held-out epoch
    epochs = outcome.steps // steps_per_epoch
    replay = TrainConfig(**{**CONFIG.model_dump(), "early_stopping_patience": None, "stop": "loss", "loss_threshold": 1e-9})
    held_by_epoch, states = [], []
    for epoch in range(1, epochs + 1):
        config = TrainConfig(**{**replay.model_dump(), "max_steps": epoch * steps_per_epoch})
        state = EnsembleTrainer(config).fit(build, DIGITS.x_train, labels, seeds, train_indices=kept)[0].final_state
        model.load_state_dict(state)
        with torch.no_grad():
            predicted = model(DIGITS.x_train[held[0]]).argmax(-1)
        held_by_epoch.append((predicted == labels[0, held[0]]).float().mean().item())
        states.append(state)
    best = max(range(epochs), key=lambda e: (held_by_epoch[e], -e))  # the first epoch with the best score
    assert epochs - (best + 1) == CONFIG.early_stopping_patience
    assert abs(outcome.validation_accuracy - held_by_epoch[best]) < 1e-6
    assert max(held_by_epoch[best + 1 :]) < held_by_epoch[best]  # weights after the best are worse, not kept
    for name, value in states[best].items():
        torch.testing.assert_close(outcome.final_state[name], value, rtol=1e-4, atol=1e-5)


def test_the_engine_stores_early_stopped_runs(tmp_path):
    from genbench.engine import Engine, resolve_runs
    from genbench.store import Store

    spec = ExperimentSpec(
        models=[ComponentRef(name="mlp", options={"hidden": [32]})],
        levels=[1.0],
        seeds=[0],
        train=TrainConfig(lr=0.05, schedule="constant", max_steps=2000, early_stopping_patience=2),
    )
    runs = resolve_runs(spec)
    with Store(tmp_path / "store") as store:
        summary = Engine(store).train(runs)
        assert [r.status for r in summary.trained] == ["early-stopped"]
        assert store.run_result(runs[0].run_id).status == "early-stopped"
        assert store.finished_ids([runs[0].run_id]) == {runs[0].run_id}
    assert RunResult.model_fields["status"].annotation.__args__[-1] == "early-stopped"
