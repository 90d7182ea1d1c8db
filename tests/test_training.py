from __future__ import annotations

import math

import torch
from torch import nn

from genbench.corruptions import corrupt_labels
from genbench.datasets import Digits, DigitsOptions
from genbench.models.mlp import MLPOptions, MultilayerPerceptron
from genbench.schemas import TrainConfig
from genbench.inference import pick_device
from genbench.seeding import derive_seed
from genbench.training import EnsembleTrainer, build_initialized, learning_rate

DIGITS = Digits().load(DigitsOptions())
CONFIG = TrainConfig(lr=0.1, schedule="constant", max_steps=400, batch_size=64)


def build():
    return MultilayerPerceptron().build(DIGITS.input_shape, 10, MLPOptions(hidden=[64]))


def noisy_labels(levels, seeds):
    return torch.stack([corrupt_labels(DIGITS.y_train, 10, p, s) for p, s in zip(levels, seeds)])


def test_a_run_trained_alone_equals_the_same_run_inside_an_ensemble():
    seeds = [0, 1, 2]
    labels = noisy_labels([0.0, 0.5, 1.0], seeds)
    together = EnsembleTrainer(CONFIG).fit(build, DIGITS.x_train, labels, seeds)
    alone = EnsembleTrainer(CONFIG).fit(build, DIGITS.x_train, labels[1:2], seeds[1:2])[0]
    assert together[1].steps == alone.steps
    for name, value in alone.final_state.items():
        torch.testing.assert_close(together[1].final_state[name], value, rtol=1e-4, atol=1e-5)
    for name, value in alone.initial_state.items():
        assert torch.equal(together[1].initial_state[name], value)


def test_members_stop_on_their_own_and_reach_full_training_accuracy():
    seeds = [0, 1]

    def wide():
        return MultilayerPerceptron().build(DIGITS.input_shape, 10, MLPOptions(hidden=[512]))

    outcomes = EnsembleTrainer(CONFIG.model_copy(update={"max_steps": 3000, "batch_size": 128})).fit(
        wide, DIGITS.x_train, noisy_labels([0.0, 1.0], seeds), seeds
    )
    assert [o.status for o in outcomes] == ["converged", "converged"]
    assert all(o.train_accuracy == 1.0 for o in outcomes)
    assert outcomes[0].steps < outcomes[1].steps  # random labels take longer to fit
    assert outcomes[0].loss_curve and outcomes[0].loss_curve[-1][0] == outcomes[0].steps


def test_momentum_sgd_matches_torch_optim_sgd_for_one_member():
    config = TrainConfig(lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="exponential", lr_decay=0.9,
                         max_steps=60, batch_size=100)
    seed = 5
    ours = EnsembleTrainer(config).fit(build, DIGITS.x_train, DIGITS.y_train[None], [seed])[0]
    model = build_initialized(build, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(derive_seed(seed, "data-order"))
    n, steps_per_epoch = DIGITS.num_train, math.ceil(DIGITS.num_train / 100)
    for step in range(60):
        if step % steps_per_epoch == 0:
            order = torch.randperm(n, generator=generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step // steps_per_epoch)
        batch = order[(step % steps_per_epoch) * 100 : (step % steps_per_epoch + 1) * 100]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(DIGITS.x_train[batch]), DIGITS.y_train[batch]).backward()
        optimizer.step()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ours.final_state[name], value, rtol=1e-4, atol=1e-5)


def test_loss_threshold_stop_and_step_budget():
    by_loss = EnsembleTrainer(CONFIG.model_copy(update={"stop": "loss", "loss_threshold": 0.05, "max_steps": 5000}))
    outcome = by_loss.fit(build, DIGITS.x_train, DIGITS.y_train[None], [0])[0]
    assert outcome.status == "converged" and outcome.train_loss <= 0.05
    budget = EnsembleTrainer(CONFIG.model_copy(update={"max_steps": 3})).fit(
        build, DIGITS.x_train, noisy_labels([1.0], [0]), [0]
    )[0]
    assert budget.status == "budget" and budget.steps == 3 and budget.steps_to_fit is None


def test_divergence_is_an_outcome_not_a_crash():
    exploding = CONFIG.model_copy(update={"lr": 1e12, "max_steps": 200})
    outcomes = EnsembleTrainer(exploding).fit(build, DIGITS.x_train, noisy_labels([0.0, 1.0], [0, 1]), [0, 1])
    assert {o.status for o in outcomes} == {"diverged"}


def test_training_subsets_and_per_member_inputs():
    subset = torch.stack([torch.arange(0, 200), torch.arange(200, 400)])
    inputs = torch.stack([DIGITS.x_train, -DIGITS.x_train])
    outcomes = EnsembleTrainer(CONFIG.model_copy(update={"max_steps": 2000})).fit(
        build, inputs, DIGITS.y_train.expand(2, -1), [0, 1], train_indices=subset, per_member_inputs=True
    )
    assert all(o.status == "converged" for o in outcomes)
    assert outcomes[0].epochs == outcomes[0].steps / math.ceil(200 / 64)


def test_loop_fallback_matches_vmap():
    seeds = [0, 1]
    labels = noisy_labels([0.2, 0.8], seeds)
    config = CONFIG.model_copy(update={"max_steps": 50})
    vmapped = EnsembleTrainer(config, vmappable=True).fit(build, DIGITS.x_train, labels, seeds)
    looped = EnsembleTrainer(config, vmappable=False).fit(build, DIGITS.x_train, labels, seeds)
    for a, b in zip(vmapped, looped):
        for name in a.final_state:
            torch.testing.assert_close(a.final_state[name], b.final_state[name], rtol=1e-4, atol=1e-5)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_augmentation_crops_and_flips_each_image_with_its_members_generator():
    from genbench.training.augment import augment_batch

    images = torch.arange(2 * 3 * 1 * 4 * 4, dtype=torch.float32).view(2, 3, 1, 4, 4)
    out = augment_batch(images, 1, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for m in range(2):
        for b in range(3):
            windows = [
                padded[m, b, :, r : r + 4, c : c + 4].flip(-1) if flipped else padded[m, b, :, r : r + 4, c : c + 4]
                for r in range(3) for c in range(3) for flipped in (False, True)
            ]
            assert any(torch.equal(out[m, b], w) for w in windows)  # a crop of the padded image, maybe mirrored
    again = augment_batch(images, 1, [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)])
    assert torch.equal(out, again)
    unpadded = augment_batch(images, 0, [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)])
    mirrored = [torch.equal(unpadded[m, b], images[m, b].flip(-1)) for m in range(2) for b in range(3)]
    assert all(torch.equal(unpadded[m, b], images[m, b]) or mirrored[3 * m + b] for m in range(2) for b in range(3))
    assert any(mirrored) and not all(mirrored)  # without padding only the flip is left, and it is random


def test_augmentation_crops_sequences_without_mirroring_them():
    from genbench.training.augment import augment_batch

    sequences = torch.arange(2 * 3 * 2 * 6, dtype=torch.float32).view(2, 3, 2, 6)
    generators = lambda: [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]  # noqa: E731
    out = augment_batch(sequences, 2, generators())
    assert out.shape == sequences.shape
    padded = torch.nn.functional.pad(sequences, (2, 2))
    shifts = set()
    for m in range(2):
        for b in range(3):
            matches = [start for start in range(5) if torch.equal(out[m, b], padded[m, b, :, start : start + 6])]
            assert matches  # a window of the padded sequence, both channels shifted together, never reversed
            shifts.add(matches[0])
    assert len(shifts) > 1  # the shift is drawn per example
    assert torch.equal(out, augment_batch(sequences, 2, generators()))
    assert torch.equal(augment_batch(sequences, 0, generators()), sequences)  # no padding: nothing moves


def test_training_with_augmentation_keeps_run_ids_of_plain_specs():
    from genbench.schemas import TrainConfig

    assert "augment" not in TrainConfig().model_dump(mode="json")
    assert TrainConfig(augment=True).model_dump(mode="json")["augment"] is True
    config = CONFIG.model_copy(update={"augment": True, "max_steps": 20})
    outcome = EnsembleTrainer(config).fit(build, DIGITS.x_train, DIGITS.y_train[None], [0])[0]
    plain = EnsembleTrainer(CONFIG.model_copy(update={"max_steps": 20})).fit(build, DIGITS.x_train, DIGITS.y_train[None], [0])[0]
    assert not torch.equal(outcome.final_state["1.weight"], plain.final_state["1.weight"])


def test_members_that_share_a_seed_share_their_minibatches_with_unchanged_results():
    seeds = [0, 1, 0, 0]  # three members see the same minibatches
    labels = noisy_labels([0.0, 0.3, 0.6, 1.0], seeds)
    config = CONFIG.model_copy(update={"max_steps": 150})
    together = EnsembleTrainer(config).fit(build, DIGITS.x_train, labels, seeds)
    for member in (2, 3):
        alone = EnsembleTrainer(config).fit(build, DIGITS.x_train, labels[member : member + 1], [0])[0]
        assert together[member].steps == alone.steps
        for name, value in alone.final_state.items():
            torch.testing.assert_close(together[member].final_state[name], value, rtol=1e-4, atol=1e-5)
