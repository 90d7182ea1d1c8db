from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genbench.corruptions import (
    GaussianInputs,
    PartiallyCorruptedLabels,
    RandomLabels,
    RandomPixels,
    ShuffledPixels,
    chosen_examples,
    corrupt_labels,
    derived_seed,
    register_corruptions,
)
from genbench.datasets import Dataset, Digits, DigitsOptions

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


# ---------------------------------------------------------------------------
# The randomization tests of Zhang et al. 2017 §2.1 as plugins
# ---------------------------------------------------------------------------

LABEL_CORRUPTIONS = [PartiallyCorruptedLabels(), RandomLabels()]
PIXEL_CORRUPTIONS = [ShuffledPixels(), RandomPixels(), GaussianInputs()]
ALL_CORRUPTIONS = LABEL_CORRUPTIONS + PIXEL_CORRUPTIONS
SHAPES = [(5,), (7,), (2, 6), (1, 3, 3), (3, 4, 4), (2, 3, 5)]

shapes = st.sampled_from(SHAPES)
corruptions = st.sampled_from(ALL_CORRUPTIONS)
pixel_corruptions = st.sampled_from(PIXEL_CORRUPTIONS)
seeds = st.integers(0, 2**31)


def make_dataset(n_train, n_test, shape, seed, num_classes=5):
    """Continuous random inputs (all values distinct almost surely), random labels."""
    g = torch.Generator().manual_seed(seed)
    return Dataset(
        name="synthetic",
        x_train=torch.randn(n_train, *shape, generator=g),
        y_train=torch.randint(0, num_classes, (n_train,), generator=g),
        x_test=torch.randn(n_test, *shape, generator=g),
        y_test=torch.randint(0, num_classes, (n_test,), generator=g),
        num_classes=num_classes,
    )


def options_for(corruption, **overrides):
    fields = corruption.Options.model_fields
    return corruption.Options(**{k: v for k, v in overrides.items() if k in fields})


def positions(x):
    """[n, *shape] as [n, channels, positions], the convention of the corruptions."""
    if x.dim() == 2:
        return x.reshape(x.shape[0], 1, x.shape[1])
    return x.reshape(x.shape[0], x.shape[1], -1)


def recover_permutation(original, permuted):
    """perm with permuted[:, j] == original[:, perm[j]], matching a pixel's values in every channel
    (distinct pixels: channel 0 alone can repeat a float32 value, as seed 524 draws)."""
    match = (permuted[:, :, None] == original[:, None, :]).all(dim=0)
    assert bool((match.sum(dim=1) == 1).all())
    return match.float().argmax(dim=1)


def test_chosen_examples_is_the_label_draw():
    labels = torch.zeros(500, dtype=torch.long)
    noisy = corrupt_labels(labels, 2**40, 0.3, 11)  # K huge: chosen <=> changed (almost surely)
    assert torch.equal(noisy != 0, chosen_examples(500, 0.3, 11))


@settings(max_examples=30, deadline=None)
@given(corruption=corruptions, shape=shapes, n=st.integers(0, 30), seed=seeds, apply_to_test=st.booleans())
def test_level_zero_is_the_identity_for_every_corruption(corruption, shape, n, seed, apply_to_test):
    data = make_dataset(n, 7, shape, seed)
    for test_labels in ("clean", "corrupted"):
        out = corruption.apply(data, 0.0, seed, options_for(corruption, apply_to_test=apply_to_test), test_labels)
        assert out.x_train is data.x_train and out.x_test is data.x_test
        assert torch.equal(out.y_train, data.y_train) and torch.equal(out.y_test, data.y_test)
        assert torch.equal(out.y_train_clean, data.y_train) and torch.equal(out.y_test_clean, data.y_test)


@settings(max_examples=30, deadline=None)
@given(corruption=corruptions, shape=shapes, level=st.floats(0, 1), seed=seeds, apply_to_test=st.booleans())
def test_same_seed_same_result_and_shapes_dtypes_clean_labels_preserved(corruption, shape, level, seed, apply_to_test):
    data = make_dataset(25, 9, shape, seed)
    options = options_for(corruption, apply_to_test=apply_to_test)
    first = corruption.apply(data, level, seed, options)
    second = corruption.apply(data, level, seed, options)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(second, name))
        assert getattr(first, name).shape == getattr(data, name).shape
        assert getattr(first, name).dtype == getattr(data, name).dtype
    assert torch.equal(first.y_train_clean, data.y_train) and torch.equal(first.y_test_clean, data.y_test)
    assert first.num_classes == data.num_classes
    # the input dataset is not modified in place
    assert torch.equal(data.x_train, make_dataset(25, 9, shape, seed).x_train)


@settings(max_examples=30, deadline=None)
@given(corruption=corruptions, seed=seeds)
def test_different_seed_different_result(corruption, seed):
    data = make_dataset(200, 50, (3, 4, 4), 0)
    options = options_for(corruption, apply_to_test=True)
    a = corruption.apply(data, 0.5, seed, options)
    b = corruption.apply(data, 0.5, seed + 1, options)
    if corruption in LABEL_CORRUPTIONS:
        assert not torch.equal(a.y_train, b.y_train)
    else:
        assert not torch.equal(a.x_train, b.x_train)
        assert not torch.equal(a.x_test, b.x_test)


@settings(max_examples=30, deadline=None)
@given(corruption=pixel_corruptions, shape=shapes, level=st.floats(0, 1), seed=seeds, apply_to_test=st.booleans())
def test_pixel_corruptions_touch_only_chosen_examples_and_keep_labels(corruption, shape, level, seed, apply_to_test):
    data = make_dataset(30, 12, shape, seed)
    for test_labels in ("clean", "corrupted"):
        out = corruption.apply(data, level, seed, options_for(corruption, apply_to_test=apply_to_test), test_labels)
        assert torch.equal(out.y_train, data.y_train) and torch.equal(out.y_test, data.y_test)
        train_chosen = chosen_examples(30, level, seed)
        assert torch.equal(out.x_train[~train_chosen], data.x_train[~train_chosen])  # bit for bit
        if not bool(train_chosen.any()):
            assert out.x_train is data.x_train
        if apply_to_test:
            test_chosen = chosen_examples(12, level, derived_seed(seed, "test-examples"))
            assert torch.equal(out.x_test[~test_chosen], data.x_test[~test_chosen])
            if not bool(test_chosen.any()):
                assert out.x_test is data.x_test
        else:
            assert out.x_test is data.x_test
        if isinstance(corruption, GaussianInputs):  # noise never reproduces a row exactly
            changed = (out.x_train != data.x_train).flatten(1).any(dim=1)
            assert torch.equal(changed, train_chosen)


@settings(max_examples=30, deadline=None)
@given(corruption=pixel_corruptions, level=st.floats(0, 1), seed=seeds)
def test_fraction_of_touched_examples_is_p(corruption, level, seed):
    n_train, n_test = 2_000, 1_000
    data = make_dataset(n_train, n_test, (2, 4, 4), seed)
    out = corruption.apply(data, level, seed, options_for(corruption, apply_to_test=True))
    for n, before, after in ((n_train, data.x_train, out.x_train), (n_test, data.x_test, out.x_test)):
        touched = (after != before).flatten(1).any(dim=1).float().mean().item()
        assert abs(touched - level) < 5 * (level * (1 - level) / n) ** 0.5 + 2e-3


@settings(max_examples=30, deadline=None)
@given(corruption=corruptions, low=st.floats(0, 1), high=st.floats(0, 1), seed=seeds)
def test_levels_are_nested(corruption, low, high, seed):
    """For one seed, an example touched at level p is touched, identically, at every level above p."""
    low, high = sorted((low, high))
    data = make_dataset(60, 30, (2, 3, 3), seed)
    options = options_for(corruption, apply_to_test=True)
    a, b = corruption.apply(data, low, seed, options), corruption.apply(data, high, seed, options)
    for name, clean in (("x_train", data.x_train), ("x_test", data.x_test), ("y_train", data.y_train)):
        before, at_low, at_high = clean, getattr(a, name), getattr(b, name)
        touched = at_low != before
        if touched.dim() > 1:
            touched = touched.flatten(1).any(dim=1)
        assert torch.equal(at_low[touched], at_high[touched])


@settings(max_examples=30, deadline=None)
@given(data=labels_strategy, level=st.floats(0, 1), seed=seeds, test_labels=st.sampled_from(["clean", "corrupted"]))
def test_random_labels_coincide_with_labels_at_every_level(data, level, seed, test_labels):
    k, values = data
    labels = torch.tensor(values)
    dataset = Dataset("d", torch.zeros(len(values), 2), labels, torch.zeros(len(values), 2), labels.flip(0), k)
    a = RandomLabels().apply(dataset, level, seed, RandomLabels.Options(), test_labels)
    b = PartiallyCorruptedLabels().apply(dataset, level, seed, PartiallyCorruptedLabels.Options(), test_labels)
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train is dataset.x_train and a.x_test is dataset.x_test


def test_random_labels_at_level_one_are_uniform_and_independent_of_the_inputs():
    from scipy.stats import chi2_contingency, chisquare

    n, k = 20_000, 10
    truth = torch.arange(n) % k
    # inputs that determine the true class: one-hot plus a little noise
    g = torch.Generator().manual_seed(3)
    x = torch.nn.functional.one_hot(truth, k).float() + 0.1 * torch.randn(n, k, generator=g)
    dataset = Dataset("d", x, truth, x[:10], truth[:10], k)
    noisy = RandomLabels().apply(dataset, 1.0, 7, RandomLabels.Options()).y_train
    assert chisquare(torch.bincount(noisy, minlength=k).numpy()).pvalue > 0.01
    table = torch.zeros(k, k, dtype=torch.long)
    table.index_put_((x.argmax(dim=1), noisy), torch.ones(n, dtype=torch.long), accumulate=True)
    assert chi2_contingency(table.numpy()).pvalue > 0.01
    # and the draw does not look at the inputs at all
    other = dataset.with_changes(x_train=torch.randn(n, k, generator=g))
    assert torch.equal(RandomLabels().apply(other, 1.0, 7, RandomLabels.Options()).y_train, noisy)
    assert (noisy != truth).float().mean().item() == pytest.approx(1 - 1 / k, abs=0.02)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, level=st.floats(0.2, 1), seed=seeds)
def test_shuffled_pixels_use_one_permutation_for_train_and_test(shape, level, seed):
    data = make_dataset(30, 30, shape, seed)
    out = ShuffledPixels().apply(data, level, seed, ShuffledPixels.Options())
    assert ShuffledPixels.Options().apply_to_test is True
    train_chosen = chosen_examples(30, level, seed)
    test_chosen = chosen_examples(30, level, derived_seed(seed, "test-examples"))
    before = torch.cat([positions(data.x_train)[train_chosen], positions(data.x_test)[test_chosen]])
    after = torch.cat([positions(out.x_train)[train_chosen], positions(out.x_test)[test_chosen]])
    if before.shape[0] == 0:
        return
    perm = recover_permutation(before[0], after[0])
    assert torch.equal(after, before[:, :, perm])  # every chosen image, train and test, all channels
    assert torch.equal(perm, ShuffledPixels().permutation(before.shape[2], seed))
    assert sorted(perm.tolist()) == list(range(before.shape[2]))


def test_shuffled_pixels_can_leave_the_test_set_alone():
    data = make_dataset(20, 20, (3, 4, 4), 0)
    out = ShuffledPixels().apply(data, 1.0, 0, ShuffledPixels.Options(apply_to_test=False))
    assert out.x_test is data.x_test
    assert not torch.equal(out.x_train, data.x_train)


@settings(max_examples=30, deadline=None)
@given(shape=shapes, level=st.floats(0, 1), seed=seeds, apply_to_test=st.booleans())
def test_random_pixels_keep_each_images_pixel_values(shape, level, seed, apply_to_test):
    data = make_dataset(30, 15, shape, seed)
    out = RandomPixels().apply(data, level, seed, RandomPixels.Options(apply_to_test=apply_to_test))
    for before, after in ((data.x_train, out.x_train), (data.x_test, out.x_test)):
        b, a = positions(before), positions(after)
        assert torch.equal(b.sort(dim=2).values, a.sort(dim=2).values)  # each channel's multiset
        for i in range(b.shape[0]):  # a pixel keeps its channel values together
            assert torch.equal(a[i], b[i][:, recover_permutation(b[i], a[i])])
    if not apply_to_test:
        assert out.x_test is data.x_test


@settings(max_examples=30, deadline=None)
@given(seed=seeds, apply_to_test=st.booleans())
def test_random_pixels_use_different_permutations_for_different_images(seed, apply_to_test):
    data = make_dataset(40, 40, (3, 8, 8), seed)
    out = RandomPixels().apply(data, 0.5, seed, RandomPixels.Options(apply_to_test=apply_to_test))
    perms = []
    for before, after in ((data.x_train, out.x_train), (data.x_test, out.x_test)):
        b, a = positions(before), positions(after)
        touched = (a != b).flatten(1).any(dim=1)
        perms += [tuple(recover_permutation(b[i], a[i]).tolist()) for i in torch.nonzero(touched).flatten()]
    assert len(perms) >= 5
    assert len(set(perms)) == len(perms)  # 64! permutations: equal ones would mean a shared permutation


@settings(max_examples=10, deadline=None)
@given(
    seed=seeds,
    means=st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    stds=st.lists(st.floats(0.2, 3), min_size=3, max_size=3),
    statistics=st.sampled_from(["per-channel", "global"]),
)
def test_gaussian_matches_the_training_mean_and_variance(seed, means, stds, statistics):
    n = 5_000
    data = make_dataset(n, 2_000, (3, 4, 4), seed)
    scale = torch.tensor(stds)[None, :, None, None]
    shift = torch.tensor(means)[None, :, None, None]
    data = data.with_changes(x_train=data.x_train * scale + shift, x_test=data.x_test * scale + shift)
    out = GaussianInputs().apply(data, 1.0, seed, GaussianInputs.Options(statistics=statistics, apply_to_test=True))
    x = positions(data.x_train).transpose(0, 1).reshape(3, -1).double()
    if statistics == "global":
        x = x.reshape(1, -1).expand(3, -1)
    want_mean, want_var = x.mean(dim=1), x.var(dim=1)
    for noisy in (out.x_train, out.x_test):  # test noise uses the training statistics too
        y = positions(noisy).transpose(0, 1).reshape(3, -1).double()
        assert ((y.mean(dim=1) - want_mean).abs() < 0.03 * want_var.sqrt()).all()
        assert torch.allclose(y.var(dim=1), want_var, rtol=0.04)
    # the noise does not depend on the original pixels: no correlation, element by element, in each channel
    for c in range(3):
        noise, original = positions(out.x_train)[:, c].flatten(), positions(data.x_train)[:, c].flatten()
        assert abs(torch.corrcoef(torch.stack([noise, original]))[0, 1].item()) < 0.02
    assert torch.equal(out.y_train, data.y_train)  # labels kept, as in Zhang et al.


@settings(max_examples=30, deadline=None)
@given(seed=seeds, d=st.integers(2, 12))
def test_gaussian_per_channel_is_global_for_one_dimensional_inputs(seed, d):
    data = make_dataset(40, 5, (d,), seed)
    data = data.with_changes(x_train=data.x_train * torch.linspace(0.5, 3, d) + torch.arange(d))
    a = GaussianInputs().apply(data, 0.7, seed, GaussianInputs.Options(statistics="per-channel"))
    b = GaussianInputs().apply(data, 0.7, seed, GaussianInputs.Options(statistics="global"))
    assert torch.equal(a.x_train, b.x_train)


def test_gaussian_options_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GaussianInputs.Options(statistics="per-image")
    assert GaussianInputs.Options().statistics == "per-channel"
    assert GaussianInputs.Options().apply_to_test is False
    assert RandomPixels.Options().apply_to_test is False


def test_pixel_corruptions_ignore_corrupted_test_labels():
    data = make_dataset(50, 50, (1, 3, 3), 0)
    for corruption in PIXEL_CORRUPTIONS:
        out = corruption.apply(data, 1.0, 0, options_for(corruption, apply_to_test=True), "corrupted")
        assert torch.equal(out.y_test, data.y_test) and torch.equal(out.y_train, data.y_train)
    out = RandomLabels().apply(data, 1.0, 0, RandomLabels.Options(), "corrupted")
    assert not torch.equal(out.y_test, data.y_test)


def test_every_corruption_is_registered_and_documented():
    registered = []
    register_corruptions(register=registered.append)
    names = [c.name for c in registered]
    assert names == ["labels", "random-labels", "shuffled-pixels", "random-pixels", "gaussian"]
    for corruption in registered:
        assert "\n" not in corruption.description and corruption.description
        doc = type(corruption).__doc__
        assert "Zhang et al. 2017" in doc
        for name, field in corruption.Options.model_fields.items():
            assert field.description, f"{corruption.name}.{name} has no description"


# --- on the real digits dataset (1, 8, 8) --------------------------------------


@pytest.fixture(scope="module")
def digits():
    return Digits().load(DigitsOptions())


def test_random_labels_on_digits(digits):
    out = RandomLabels().apply(digits, 1.0, 0, RandomLabels.Options())
    assert out.x_train is digits.x_train and out.x_test is digits.x_test
    assert 0.8 < (out.y_train != digits.y_train).float().mean().item() < 0.98
    assert torch.equal(out.y_test, digits.y_test) and torch.equal(out.clean_train_labels(), digits.y_train)


def test_shuffled_pixels_on_digits(digits):
    out = ShuffledPixels().apply(digits, 1.0, 5, ShuffledPixels.Options())
    perm = ShuffledPixels().permutation(64, 5)
    assert torch.equal(out.x_train.flatten(1), digits.x_train.flatten(1)[:, perm])
    assert torch.equal(out.x_test.flatten(1), digits.x_test.flatten(1)[:, perm])
    assert out.x_train.shape == (digits.num_train, 1, 8, 8) and out.x_train.dtype == torch.float32
    assert torch.equal(out.y_train, digits.y_train) and torch.equal(out.y_test, digits.y_test)
    half = ShuffledPixels().apply(digits, 0.5, 5, ShuffledPixels.Options())
    chosen = chosen_examples(digits.num_train, 0.5, 5)
    assert torch.equal(half.x_train[chosen], out.x_train[chosen])
    assert torch.equal(half.x_train[~chosen], digits.x_train[~chosen])


def test_random_pixels_on_digits(digits):
    out = RandomPixels().apply(digits, 1.0, 5, RandomPixels.Options())
    assert out.x_test is digits.x_test
    assert out.x_train.shape == digits.x_train.shape and out.x_train.dtype == torch.float32
    assert torch.equal(out.x_train.flatten(1).sort(dim=1).values, digits.x_train.flatten(1).sort(dim=1).values)
    assert (out.x_train != digits.x_train).flatten(1).any(dim=1).float().mean().item() > 0.99
    assert torch.equal(out.y_train, digits.y_train)


def test_gaussian_on_digits(digits):
    out = GaussianInputs().apply(digits, 1.0, 5, GaussianInputs.Options())
    assert out.x_test is digits.x_test and torch.equal(out.y_train, digits.y_train)
    assert out.x_train.shape == digits.x_train.shape and out.x_train.dtype == torch.float32
    mean, std = digits.x_train.double().mean().item(), digits.x_train.double().std().item()
    assert out.x_train.double().mean().item() == pytest.approx(mean, abs=0.02)
    assert out.x_train.double().std().item() == pytest.approx(std, rel=0.02)
    half = GaussianInputs().apply(digits, 0.5, 5, GaussianInputs.Options())
    chosen = chosen_examples(digits.num_train, 0.5, 5)
    assert torch.equal((half.x_train != digits.x_train).flatten(1).any(dim=1), chosen)
