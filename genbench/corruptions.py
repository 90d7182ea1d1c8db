"""The randomization tests of Zhang et al. (ICLR 2017, §2.1) as corruptions.

A corruption plugin provides ``name``, ``description``, an ``Options`` model and
``apply(dataset, level, seed, options, test_labels) -> Dataset``, a pure function
of its arguments: the corruption is drawn once from ``seed`` and stays fixed.

Built-in corruptions ("true labels" is any corruption at level 0):

=================  ==============================================  ==========================
name               touches (each chosen example)                   options (default)
=================  ==============================================  ==========================
labels             training label -> uniform random class           -
random-labels      the same (Zhang's random labels = p = 1)         -
shuffled-pixels    inputs, one fixed permutation of positions       apply_to_test (True)
random-pixels      inputs, a permutation of positions per image     apply_to_test (False)
gaussian           inputs -> noise with training mean / variance    statistics ("per-channel"),
                                                                    apply_to_test (False)
=================  ==============================================  ==========================

Conventions shared by every built-in corruption:

- ``level`` p in [0, 1] is the fraction of examples touched: each example is
  chosen independently with probability p (``torch.rand(n) < p`` from a
  ``torch.Generator`` seeded with ``seed``; :func:`chosen_examples`). The
  training examples chosen are the same for every corruption at the same seed
  and level, and the choice is nested across levels: raising p only adds
  examples.
- Everything is drawn from generators seeded from ``seed`` (never the global
  RNG). The content of a corruption (permutations, noise) is drawn for every
  example whether chosen or not, so an example chosen at two levels gets the
  same corruption at both.
- Unchosen examples are unchanged bit for bit; when no input changes, the
  returned dataset holds the very same ``x_train`` / ``x_test`` tensor objects
  (the engine relies on that identity to share inputs across an ensemble), so
  p = 0 is the identity.
- The returned dataset always has ``y_train_clean`` / ``y_test_clean`` filled.
- "Pixel positions": inputs of shape (C, H, W) (or any (C, *spatial)) have
  their spatial positions permuted jointly across channels, so a pixel keeps its
  channel values together; 1-D inputs (d,) have their d features permuted;
  (C, L) inputs their L positions.
"""

from __future__ import annotations

import hashlib
import math
from typing import ClassVar, Literal, Protocol

import torch
from pydantic import Field

from genbench.datasets import Dataset
from genbench.errors import DataError
from genbench.hookspecs import hookimpl
from genbench.schemas import Options

TEST_LABEL_SEED_OFFSET = 1_000_003
# Random content (per-image permutations, noise) is drawn in chunks of this many
# examples; fixed, so that the draws do not depend on anything but the seed.
_CHUNK = 1024


class Corruption(Protocol):
    """A corruption plugin. Optional ``uninformative_at_full`` (default False): True when,
    at level 1, training inputs and labels are independent — the cells where the
    leaderboard checks that capability scores are ≈ 0."""

    name: str
    description: str
    Options: type[Options]

    def apply(
        self,
        dataset: Dataset,
        level: float,
        seed: int,
        options: Options,
        test_labels: Literal["clean", "corrupted"] = "clean",
    ) -> Dataset: ...


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for an independent stream, derived from ``seed`` and a ``purpose``
    string (SHA-256, 63 bits)."""
    digest = hashlib.sha256(f"genbench/{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def chosen_examples(num_examples: int, level: float, seed: int) -> torch.Tensor:
    """Boolean mask: each of ``num_examples`` examples chosen independently with
    probability ``level`` (the first draw of a generator seeded with ``seed``; the
    same draw :func:`corrupt_labels` makes)."""
    return torch.rand(num_examples, generator=_generator(seed)) < level


def corrupt_labels(labels: torch.Tensor, num_classes: int, level: float, seed: int) -> torch.Tensor:
    """Each label independently, with probability ``level``, replaced by a class drawn
    uniformly from all ``num_classes`` (possibly the true one, so at level 1 about
    1/K of the labels stay right by chance). Zhang et al. 2017, §2.1."""
    generator = torch.Generator().manual_seed(int(seed))
    chosen = torch.rand(labels.shape[0], generator=generator) < level
    replacement = torch.randint(0, num_classes, (labels.shape[0],), generator=generator)
    return torch.where(chosen, replacement, labels)


def _positions_view(x: torch.Tensor) -> torch.Tensor:
    """``x`` [n, *input_shape] viewed as [n, channels, positions]: 1-D inputs (d,)
    have one channel and d positions; (C, *spatial) inputs have C channels and
    prod(spatial) positions."""
    n = x.shape[0]
    shape = tuple(x.shape[1:])
    if len(shape) == 0:
        return x.reshape(n, 1, 1)
    if len(shape) == 1:
        return x.reshape(n, 1, shape[0])
    return x.reshape(n, shape[0], math.prod(shape[1:]))


def _num_positions(x: torch.Tensor) -> int:
    shape = tuple(x.shape[1:])
    return 1 if len(shape) == 0 else shape[0] if len(shape) == 1 else math.prod(shape[1:])


def _replace_rows(x: torch.Tensor, chosen: torch.Tensor, new_rows: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` whose ``chosen`` rows are ``new_rows``; ``x`` itself when
    nothing is chosen."""
    if not bool(chosen.any()):
        return x
    out = x.clone()
    out[chosen] = new_rows.to(dtype=x.dtype)
    return out


def _with_clean_labels(dataset: Dataset, **changes: object) -> Dataset:
    return dataset.with_changes(
        y_train_clean=dataset.clean_train_labels(),
        y_test_clean=dataset.clean_test_labels(),
        **changes,
    )


class LabelsOptions(Options):
    pass


class PartiallyCorruptedLabels:
    """Partially corrupted labels (Zhang et al. 2017, §2.1): each training label,
    with probability p = level, replaced by a uniformly random class. Test labels
    stay clean unless ``test_labels = "corrupted"``, in which case the same
    process (with a seed derived from ``seed``) is applied to them."""

    name: ClassVar[str] = "labels"
    #: at level 1 the training labels carry no information about the inputs
    uninformative_at_full: ClassVar[bool] = True
    description: ClassVar[str] = "each training label with probability p replaced by a uniform random class"
    Options = LabelsOptions

    def apply(self, dataset, level, seed, options, test_labels="clean") -> Dataset:
        y_train = corrupt_labels(dataset.y_train, dataset.num_classes, level, seed)
        y_test = dataset.y_test
        if test_labels == "corrupted":
            y_test = corrupt_labels(dataset.y_test, dataset.num_classes, level, seed + TEST_LABEL_SEED_OFFSET)
        return dataset.with_changes(
            y_train=y_train,
            y_test=y_test,
            y_train_clean=dataset.clean_train_labels(),
            y_test_clean=dataset.clean_test_labels(),
        )


class RandomLabelsOptions(Options):
    pass


class RandomLabels(PartiallyCorruptedLabels):
    """Random labels (Zhang et al. 2017, §2.1): every training label replaced by a
    class drawn uniformly at random (which may be the true one, so about 1/K stay
    right by chance); inputs untouched.

    Choice where the paper has none: ``level`` keeps the meaning it has for every
    corruption, the fraction of examples touched. At p = 1 this is the paper's
    test; at p < 1 it coincides with ``labels`` (the very same draw for the same
    seed), i.e. partially corrupted labels. Test labels stay clean unless
    ``test_labels = "corrupted"``, in which case the same process (seed
    ``seed + 1_000_003``) is applied to them.
    """

    name: ClassVar[str] = "random-labels"
    description: ClassVar[str] = "Zhang's random labels: all training labels uniform random at p = 1 (= labels at p)"
    Options = RandomLabelsOptions


class ShuffledPixelsOptions(Options):
    apply_to_test: bool = Field(
        True,
        description="also shuffle the test images (each chosen with probability p, same permutation), "
        "as in Zhang et al.",
    )


class ShuffledPixels:
    """Shuffled pixels (Zhang et al. 2017, §2.1): ONE random permutation of the
    pixel positions, drawn once from ``seed``, applied to every chosen image of
    train and (``apply_to_test``, the paper's choice and the default) test.

    Positions: for (C, H, W) inputs the H·W spatial positions, permuted jointly
    across channels (a pixel keeps its channel values together); for 1-D inputs
    (d,) the d features; for (C, L) the L positions.

    Choices where the paper has none: the paper shuffles every image; here each
    training image is chosen independently with probability p = level (the same
    choice as ``labels`` at the same seed), and each test image with probability p
    from an independent seed derived from ``seed``. The permutation comes from its
    own derived stream and does not depend on p or on the dataset's size. Labels
    are untouched: ``test_labels = "corrupted"`` does not change test labels for
    pixel corruptions.
    """

    name: ClassVar[str] = "shuffled-pixels"
    description: ClassVar[str] = "one fixed random permutation of pixel positions applied to a fraction p of images"
    Options = ShuffledPixelsOptions

    def permutation(self, num_positions: int, seed: int) -> torch.Tensor:
        """The permutation of positions used for ``seed``: new position j holds old
        position ``perm[j]``."""
        return torch.randperm(num_positions, generator=_generator(derived_seed(seed, "shuffled-pixels/permutation")))

    def apply(self, dataset, level, seed, options, test_labels="clean") -> Dataset:
        perm = self.permutation(_num_positions(dataset.x_train), seed)

        def shuffle(x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
            if not bool(chosen.any()):
                return x
            selected = x[chosen]
            return _replace_rows(x, chosen, _positions_view(selected)[:, :, perm].reshape(selected.shape))

        x_train = shuffle(dataset.x_train, chosen_examples(dataset.num_train, level, seed))
        x_test = dataset.x_test
        if options.apply_to_test:
            x_test = shuffle(x_test, chosen_examples(dataset.num_test, level, derived_seed(seed, "test-examples")))
        return _with_clean_labels(dataset, x_train=x_train, x_test=x_test)


class RandomPixelsOptions(Options):
    apply_to_test: bool = Field(
        False,
        description="also permute the test images (each chosen with probability p, its own permutation); "
        "off by default so that test accuracy measures the real distribution",
    )


def _per_image_permutations(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random permutation of positions per example of ``x``: an index tensor
    [n, positions], drawn in fixed chunks from ``generator``."""
    n, positions = x.shape[0], _num_positions(x)
    parts = [
        torch.rand(min(_CHUNK, n - start), positions, generator=generator).argsort(dim=1)
        for start in range(0, n, _CHUNK)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, positions, dtype=torch.long)


class RandomPixels:
    """Random pixels (Zhang et al. 2017, §2.1): each chosen image has its pixel
    positions permuted by its OWN random permutation (drawn once from ``seed``),
    so an image keeps its multiset of pixel values and loses all spatial
    structure, with no structure shared across images.

    Positions: as for ``shuffled-pixels`` — for (C, H, W) inputs the H·W spatial
    positions jointly across channels; for 1-D (d,) the d features; for (C, L)
    the L positions.

    Choices where the paper has none: each training image is chosen independently
    with probability p = level (the same choice as ``labels`` at the same seed);
    the test images stay clean by default (``apply_to_test = False``), so the
    generalization gap is measured against the real distribution; with
    ``apply_to_test`` each test image is chosen with probability p from a derived
    seed and gets its own permutation. Permutations are drawn for every example
    (chosen or not) from a derived stream, so they do not depend on p. Labels are
    untouched: ``test_labels = "corrupted"`` does not change test labels for pixel
    corruptions.
    """

    name: ClassVar[str] = "random-pixels"
    description: ClassVar[str] = "a fraction p of images each permuted by its own random permutation of pixel positions"
    Options = RandomPixelsOptions

    def apply(self, dataset, level, seed, options, test_labels="clean") -> Dataset:
        def permute(x: torch.Tensor, chosen: torch.Tensor, purpose: str) -> torch.Tensor:
            if not bool(chosen.any()):
                return x
            perms = _per_image_permutations(x, _generator(derived_seed(seed, purpose)))[chosen]
            selected = x[chosen]
            view = _positions_view(selected)
            index = perms[:, None, :].expand(-1, view.shape[1], -1)
            return _replace_rows(x, chosen, view.gather(2, index).reshape(selected.shape))

        x_train = permute(
            dataset.x_train, chosen_examples(dataset.num_train, level, seed), "random-pixels/train-permutations"
        )
        x_test = dataset.x_test
        if options.apply_to_test:
            x_test = permute(
                x_test,
                chosen_examples(dataset.num_test, level, derived_seed(seed, "test-examples")),
                "random-pixels/test-permutations",
            )
        return _with_clean_labels(dataset, x_train=x_train, x_test=x_test)


class GaussianOptions(Options):
    statistics: Literal["per-channel", "global"] = Field(
        "per-channel",
        description="mean and variance of the noise: per channel (over all training examples and positions) "
        "or one pair over the whole training set; 1-D inputs have no channel axis, so per-channel = global",
    )
    apply_to_test: bool = Field(
        False,
        description="also replace test images by noise (each chosen with probability p); off by default so that "
        "test accuracy measures the real distribution",
    )


def training_statistics(x_train: torch.Tensor, statistics: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (population) of the training inputs, as float64
    tensors of shape [channels, 1] (broadcasting against [n, channels, positions]):
    per channel (over all examples and positions) or global (the same value in
    every channel). 1-D inputs have one channel. Accumulated in float64, in chunks."""
    n = x_train.shape[0]
    if n == 0:
        raise DataError("corruption 'gaussian' needs training examples to estimate the mean and variance")
    view = _positions_view(x_train)
    dims = (0, 2) if statistics == "per-channel" else (0, 1, 2)
    chunks = [view[start : start + _CHUNK].to(torch.float64) for start in range(0, n, _CHUNK)]
    count = n * view.shape[2] * (1 if statistics == "per-channel" else view.shape[1])
    mean = sum(chunk.sum(dim=dims, keepdim=True) for chunk in chunks) / count
    var = sum(((chunk - mean) ** 2).sum(dim=dims, keepdim=True) for chunk in chunks) / count
    channels = view.shape[1]
    return mean[0].expand(channels, 1), var[0].sqrt().expand(channels, 1)


class GaussianInputs:
    """Gaussian (Zhang et al. 2017, §2.1): each chosen image replaced by Gaussian
    noise with the dataset's mean and variance; the labels are kept, as in the
    paper. The noise is drawn once from ``seed`` (independently per element).

    Choices where the paper has none: mean and variance are those of the TRAINING
    inputs (population variance), per channel by default (for each channel over
    all examples and positions; ``statistics = "global"`` for one mean and
    variance; 1-D inputs have no channel axis, so per-channel = global; (C, ...)
    inputs take axis 1 as the channel). Each training image is chosen
    independently with probability p = level (the same choice as ``labels`` at the
    same seed); test images stay clean by default (``apply_to_test = False``), so
    the gap measures generalization to the real distribution; with
    ``apply_to_test`` each test image is chosen with probability p from a derived
    seed and replaced by noise with the same training statistics. Noise is drawn
    for every example (chosen or not), so it does not depend on p. Labels are
    untouched: ``test_labels = "corrupted"`` does not change test labels for
    input corruptions.
    """

    name: ClassVar[str] = "gaussian"
    #: at level 1 the inputs carry no information about the labels
    uninformative_at_full: ClassVar[bool] = True
    description: ClassVar[str] = "a fraction p of images replaced by Gaussian noise with the training mean and variance"
    Options = GaussianOptions

    def apply(self, dataset, level, seed, options, test_labels="clean") -> Dataset:
        train_chosen = chosen_examples(dataset.num_train, level, seed)
        test_chosen = None
        if options.apply_to_test:
            test_chosen = chosen_examples(dataset.num_test, level, derived_seed(seed, "test-examples"))
        if not bool(train_chosen.any()) and (test_chosen is None or not bool(test_chosen.any())):
            return _with_clean_labels(dataset)
        mean, std = training_statistics(dataset.x_train, options.statistics)

        def noise(x: torch.Tensor, chosen: torch.Tensor, purpose: str) -> torch.Tensor:
            if not bool(chosen.any()):
                return x
            generator = _generator(derived_seed(seed, purpose))
            view_shape = _positions_view(x[:0]).shape[1:]
            parts = [
                torch.randn(min(_CHUNK, x.shape[0] - start), *view_shape, generator=generator)[
                    chosen[start : start + _CHUNK]
                ]
                for start in range(0, x.shape[0], _CHUNK)
            ]
            rows = mean.to(x.dtype) + std.to(x.dtype) * torch.cat(parts).to(x.dtype)
            return _replace_rows(x, chosen, rows.reshape(-1, *x.shape[1:]))

        x_train = noise(dataset.x_train, train_chosen, "gaussian/train-noise")
        x_test = dataset.x_test if test_chosen is None else noise(dataset.x_test, test_chosen, "gaussian/test-noise")
        return _with_clean_labels(dataset, x_train=x_train, x_test=x_test)


@hookimpl
def register_corruptions(register) -> None:
    register(PartiallyCorruptedLabels())
    register(RandomLabels())
    register(ShuffledPixels())
    register(RandomPixels())
    register(GaussianInputs())
