from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genbench.corruptions import PartiallyCorruptedLabels, corrupt_labels
from genbench.datasets import Digits, DigitsOptions

labels_strategy = st.integers(min_value=2, max_value=12).flatmap(
    lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1), min_size=1, max_size=300))
)


@settings(max_examples=50, deadline=None)
@given(data=labels_strategy, seed=st.integers(0, 2**31))
def test_level_zero_is_the_identity(data, seed):
    k, values = data
    labels = torch.tensor(values)
    assert torch.equal(corrupt_labels(labels, k, 0.0, seed), labels)


@settings(max_examples=50, deadline=None)
@given(data=labels_strategy, level=st.floats(0, 1), seed=st.integers(0, 2**31))
def test_same_seed_same_corruption_and_labels_stay_in_range(data, level, seed):
    k, values = data
    labels = torch.tensor(values)
    first = corrupt_labels(labels, k, level, seed)
    assert torch.equal(first, corrupt_labels(labels, k, level, seed))
    assert int(first.min()) >= 0 and int(first.max()) < k


def test_different_seed_different_corruption():
    labels = torch.zeros(2_000, dtype=torch.long)
    assert not torch.equal(corrupt_labels(labels, 10, 0.5, 0), corrupt_labels(labels, 10, 0.5, 1))


@settings(max_examples=20, deadline=None)
@given(level=st.floats(0, 1), k=st.integers(2, 10), seed=st.integers(0, 1000))
def test_fraction_changed_is_p_times_one_minus_one_over_k(level, k, seed):
    n = 20_000
    labels = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))
    changed = (corrupt_labels(labels, k, level, seed + 1) != labels).float().mean().item()
    expected = level * (1 - 1 / k)
    assert abs(changed - expected) < 5 * (expected * (1 - expected) / n) ** 0.5 + 1e-3


def test_labels_at_level_one_are_uniform_and_independent_of_the_truth():
    from scipy.stats import chi2_contingency, chisquare

    n, k = 20_000, 10
    truth = torch.arange(n) % k
    noisy = corrupt_labels(truth, k, 1.0, seed=7)
    counts = torch.bincount(noisy, minlength=k).numpy()
    assert chisquare(counts).pvalue > 0.01
    table = torch.zeros(k, k, dtype=torch.long)
    table.index_put_((truth, noisy), torch.ones(n, dtype=torch.long), accumulate=True)
    assert chi2_contingency(table.numpy()).pvalue > 0.01


def test_corruption_plugin_keeps_clean_copies_and_test_labels_clean_by_default():
    digits = Digits().load(DigitsOptions())
    corrupted = PartiallyCorruptedLabels().apply(digits, 1.0, 0, PartiallyCorruptedLabels.Options())
    assert torch.equal(corrupted.y_test, digits.y_test)
    assert torch.equal(corrupted.clean_train_labels(), digits.y_train)
    assert (corrupted.y_train != digits.y_train).float().mean() > 0.8
    assert corrupted.x_train is digits.x_train
    noisy_test = PartiallyCorruptedLabels().apply(digits, 1.0, 0, PartiallyCorruptedLabels.Options(), "corrupted")
    assert (noisy_test.y_test != digits.y_test).float().mean() > 0.8
    assert torch.equal(noisy_test.clean_test_labels(), digits.y_test)


def test_digits_split_is_fixed_and_standardized():
    a = Digits().load(DigitsOptions())
    assert a.num_train + a.num_test == 1797
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert abs(a.x_train.mean().item()) < 1e-4 and abs(a.x_train.std().item() - 1) < 1e-2
    b = Digits().load(DigitsOptions(split_seed=1))
    assert not torch.equal(a.y_train, b.y_train)
