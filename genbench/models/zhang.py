"""The CIFAR-10 architectures of Zhang et al. (2017), "Understanding deep learning
requires rethinking generalization" (ICLR 2017, arXiv 1611.03530), Table 1 and
Appendix A: MLP 1x512, MLP 3x512, small AlexNet and small Inception (with and
without batch norm).

All of them adapt to any input shape (channels, height, width) and any number of
classes; the MLPs also take 1-D inputs. On the paper's input, a 28×28×3 centre crop
of CIFAR-10 with 10 classes, the parameter counts (weights and biases of the
linear and convolutional layers; batch-norm parameters not counted) are exactly
Table 1's:

==================  ==========
mlp-1x512            1,209,866
mlp-3x512            1,735,178
small-alexnet        1,387,786
small-inception      1,649,402
small-inception-nobn 1,649,402
==================  ==========

Only standard ``torch.nn`` layers are used (``Linear``, ``Conv2d``,
``BatchNorm2d``, ``LocalResponseNorm``, ``MaxPool2d``, ``AdaptiveAvgPool2d``,
``Dropout``), so :mod:`genbench.measures.weights` finds every weight. Layers use
PyTorch's default initialization (the paper does not give one).

Dropout and vmap: ``torch.func.vmap`` refuses random operations unless it is called
with ``randomness="different"`` (or ``"same"``). A model built with ``dropout > 0``
therefore trains only through a vmap that allows randomness or through the
trainer's per-member loop; with the default ``dropout = 0`` (the paper's recipe for
the randomization tests) no dropout layer is built and the models vmap.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from genbench.errors import SpecError
from genbench.models.mlp import MLPOptions, MultilayerPerceptron
from genbench.schemas import Options

# ---------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------


def _check_classes(name: str, num_classes: int) -> None:
    if num_classes < 1:
        raise SpecError(f"model '{name}' needs at least one class; the dataset gives {num_classes}")


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of ``input_shape``, or a one-line SpecError."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3:
        raise SpecError(f"model '{name}' needs image inputs (channels, height, width); the dataset gives {shape}")
    if min(shape) < 1:
        raise SpecError(f"model '{name}' needs a non-empty image (channels, height, width); the dataset gives {shape}")
    return shape  # type: ignore[return-value]


def _pooled(size: int) -> int:
    """Side of a map after a 3×3 stride-2 max-pool (or conv) with padding 1: ⌊(n − 1)/2⌋ + 1."""
    return (size - 1) // 2 + 1


def _dropout_field() -> float:
    return Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "dropout probability (0 = no dropout layer, the paper's setting for the randomization tests); "
            "dropout > 0 needs a vmap with randomness allowed or the trainer's per-member loop"
        ),
    )


# ---------------------------------------------------------------------------
# MLP 1x512 and MLP 3x512
# ---------------------------------------------------------------------------


class ZhangMLPOptions(Options):
    dropout: float = _dropout_field()


class _MLPPreset:
    """Flatten → [Linear(512) → ReLU (→ Dropout)] × depth → Linear to the classes."""

    name: ClassVar[str]
    description: ClassVar[str]
    depth: ClassVar[int]
    width: ClassVar[int] = 512
    Options = ZhangMLPOptions
    vmappable: ClassVar[bool] = True

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: ZhangMLPOptions) -> nn.Module:
        _check_classes(self.name, num_classes)
        hidden = [self.width] * self.depth
        if options.dropout == 0:
            # Exactly the ``mlp`` plugin's network (same module names in the state dict).
            return MultilayerPerceptron().build(tuple(input_shape), num_classes, MLPOptions(hidden=hidden))
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(options.dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        return nn.Sequential(*layers)


class MLP1x512(_MLPPreset):
    """Zhang et al. (2017), Table 1 "MLP 1x512": one hidden layer of 512 ReLU units.

    Flatten → Linear(d, 512) → ReLU (→ Dropout) → Linear(512, classes). On a 28×28×3
    input with 10 classes: 2352·512 + 512 + 512·10 + 10 = 1,209,866 parameters.
    """

    name: ClassVar[str] = "mlp-1x512"
    description: ClassVar[str] = (
        "Zhang et al. 2017 MLP 1x512: one hidden layer of 512, ReLU (1,209,866 params on CIFAR-10)"
    )
    depth: ClassVar[int] = 1


class MLP3x512(_MLPPreset):
    """Zhang et al. (2017), Table 1 "MLP 3x512": three hidden layers of 512 ReLU units.

    Flatten → [Linear(·, 512) → ReLU (→ Dropout)] × 3 → Linear(512, classes). On a
    28×28×3 input with 10 classes: 1,735,178 parameters.
    """

    name: ClassVar[str] = "mlp-3x512"
    description: ClassVar[str] = (
        "Zhang et al. 2017 MLP 3x512: three hidden layers of 512, ReLU (1,735,178 params on CIFAR-10)"
    )
    depth: ClassVar[int] = 3


# ---------------------------------------------------------------------------
# Small AlexNet
# ---------------------------------------------------------------------------

#: TensorFlow CIFAR-10 tutorial: tf.nn.lrn(depth_radius=4, bias=1.0, alpha=0.001/9.0, beta=0.75),
#: i.e. x / (bias + alpha · Σ_{window of 2·4+1 = 9 channels} x²)^beta. PyTorch's LocalResponseNorm
#: divides alpha by the window size (x / (k + alpha/size · Σ x²)^beta), so the same function is
#: LocalResponseNorm(size=9, alpha=9 · 0.001/9 = 0.001, beta=0.75, k=1.0).
LRN_DEPTH_RADIUS = 4
LRN_SIZE = 2 * LRN_DEPTH_RADIUS + 1
LRN_BIAS = 1.0
LRN_ALPHA_TF = 0.001 / 9.0
LRN_BETA = 0.75


def tensorflow_lrn() -> nn.LocalResponseNorm:
    """``tf.nn.lrn(depth_radius=4, bias=1.0, alpha=0.001/9.0, beta=0.75)`` as a PyTorch layer."""
    return nn.LocalResponseNorm(size=LRN_SIZE, alpha=LRN_ALPHA_TF * LRN_SIZE, beta=LRN_BETA, k=LRN_BIAS)


class AlexNetOptions(Options):
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description=(
            "dropout probability before each hidden FC layer (FC 384 and FC 192), as in torchvision's AlexNet; "
            "0 = no dropout layer (the paper's randomization tests); dropout > 0 needs a vmap with randomness "
            "allowed or the trainer's per-member loop"
        ),
    )
    local_response_norm: bool = Field(
        True,
        description=(
            "local response norm after each max-pool, as in the TensorFlow CIFAR-10 tutorial: depth_radius 4 "
            "(window 9 channels), bias 1.0, alpha 0.001/9, beta 0.75 (PyTorch LocalResponseNorm(9, alpha=0.001, "
            "beta=0.75, k=1.0), which divides alpha by the window size)"
        ),
    )


class SmallAlexNetModule(nn.Module):
    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallAlexNet:
    """Zhang et al. (2017), Table 1 / Appendix A "small AlexNet" (the TensorFlow
    CIFAR-10 tutorial network).

    2 × [Conv2d 5×5, 64 channels, 'same' padding (2), bias → ReLU → MaxPool 3×3
    stride 2 padding 1 → LocalResponseNorm] → Flatten → (Dropout) → Linear 384 →
    ReLU → (Dropout) → Linear 192 → ReLU → Linear to the classes.

    The pools take H → ⌊(H − 1)/2⌋ + 1, so 28 → 14 → 7 and the first FC layer sees
    7·7·64 = 3,136 inputs: 1,387,786 parameters on a 28×28×3 input with 10 classes.
    LocalResponseNorm as in the tutorial (see :func:`tensorflow_lrn`).
    """

    name: ClassVar[str] = "small-alexnet"
    description: ClassVar[str] = (
        "Zhang et al. 2017 small AlexNet: 2×(conv5x5 64 → maxpool3/2 → LRN), FC 384, FC 192 "
        "(1,387,786 params on CIFAR-10)"
    )
    Options = AlexNetOptions
    vmappable: ClassVar[bool] = True  # LocalResponseNorm vmaps (tested); see the module docstring on dropout

    channels: ClassVar[int] = 64
    kernel_size: ClassVar[int] = 5
    fc_widths: ClassVar[tuple[int, int]] = (384, 192)

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: AlexNetOptions) -> nn.Module:
        in_channels, height, width = _image_shape(self.name, input_shape)
        _check_classes(self.name, num_classes)
        features: list[nn.Module] = []
        for _ in range(2):
            features += [
                nn.Conv2d(in_channels, self.channels, self.kernel_size, padding=self.kernel_size // 2),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            ]
            if options.local_response_norm:
                features.append(tensorflow_lrn())
            in_channels = self.channels
            height, width = _pooled(height), _pooled(width)
        classifier: list[nn.Module] = [nn.Flatten()]
        size = in_channels * height * width
        for hidden in self.fc_widths:
            if options.dropout > 0:
                classifier.append(nn.Dropout(options.dropout))
            classifier += [nn.Linear(size, hidden), nn.ReLU()]
            size = hidden
        classifier.append(nn.Linear(size, num_classes))
        return SmallAlexNetModule(nn.Sequential(*features), nn.Sequential(*classifier))


# ---------------------------------------------------------------------------
# Small Inception
# ---------------------------------------------------------------------------


def conv_module(in_channels: int, out_channels: int, kernel_size: int, stride: int, batch_norm: bool) -> nn.Sequential:
    """Zhang et al.'s "conv module": Conv2d ('same' padding, bias) → BatchNorm2d → ReLU.

    The conv bias is redundant before batch norm but is kept (and counted) so that the
    network has Table 1's 1,649,402 parameters; without the 19 conv layers' biases
    (1,712 parameters) it would have 1,647,690.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
    if batch_norm:
        layers["bn"] = nn.BatchNorm2d(out_channels)
    layers["relu"] = nn.ReLU()
    return nn.Sequential(layers)


class InceptionModule(nn.Module):
    """1×1 conv module (c1 channels) ‖ 3×3 conv module (c3 channels), concatenated: c1 + c3 channels."""

    def __init__(self, in_channels: int, c1: int, c3: int, batch_norm: bool) -> None:
        super().__init__()
        self.branch1x1 = conv_module(in_channels, c1, 1, 1, batch_norm)
        self.branch3x3 = conv_module(in_channels, c3, 3, 1, batch_norm)
        self.out_channels = c1 + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), self.branch3x3(x)], dim=-3)


class DownsampleModule(nn.Module):
    """3×3 stride-2 conv module (c3 channels) ‖ 3×3 stride-2 max-pool, concatenated: c3 + in channels.

    Both use padding 1, so both map a side n to ⌊(n − 1)/2⌋ + 1 (28 → 14 → 7)."""

    def __init__(self, in_channels: int, c3: int, batch_norm: bool) -> None:
        super().__init__()
        self.branch3x3 = conv_module(in_channels, c3, 3, 2, batch_norm)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.out_channels = c3 + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), self.pool(x)], dim=-3)


class InceptionOptions(Options):
    batch_norm: bool = Field(
        True,
        description=(
            "batch norm (running statistics, PyTorch defaults momentum 0.1, eps 1e-5) after every conv; "
            "small-inception-nobn is the same network without it, and the one that trains under vmap"
        ),
    )


class InceptionNoBNOptions(Options):
    """small-inception-nobn has no options (it is small-inception with batch_norm = false)."""


#: (kind, c1, c3) after the first Conv(96, 3×3) module: Zhang et al. (2017), Appendix A, Figure 3.
INCEPTION_PLAN: tuple[tuple[str, int, int], ...] = (
    ("inc", 32, 32),
    ("inc", 32, 48),
    ("down", 0, 80),
    ("inc", 112, 48),
    ("inc", 96, 64),
    ("inc", 80, 80),
    ("inc", 48, 96),
    ("down", 0, 96),
    ("inc", 176, 160),
    ("inc", 176, 160),
)


class SmallInception:
    """Zhang et al. (2017), Table 1 / Appendix A (Figure 3) "small Inception" for CIFAR-10.

    conv module = Conv2d ('same' padding, bias) → BatchNorm2d → ReLU;
    Inc(c1, c3) = 1×1 conv module (c1) ‖ 3×3 conv module (c3), concatenated on channels;
    Down(c3) = 3×3 stride-2 conv module (c3) ‖ 3×3 stride-2 max-pool, concatenated
    (both padding 1: 28 → 14 → 7).

    Conv(96, 3×3) → Inc(32,32) → Inc(32,48) → Down(80) → Inc(112,48) → Inc(96,64) →
    Inc(80,80) → Inc(48,96) → Down(96) → Inc(176,160) → Inc(176,160) → global mean pool
    → Linear(336, classes). 1,649,402 parameters (conv and FC weights and biases;
    batch-norm parameters not counted) on a 28×28×3 input with 10 classes.

    With batch norm (running statistics) members are trained by the trainer's
    per-member loop (``vmappable = False``).
    """

    name: ClassVar[str] = "small-inception"
    description: ClassVar[str] = (
        "Zhang et al. 2017 small Inception: conv-BN-ReLU modules, inception and downsample blocks, "
        "global mean pool (1,649,402 params on CIFAR-10)"
    )
    Options = InceptionOptions
    vmappable: ClassVar[bool] = False

    stem_channels: ClassVar[int] = 96

    def _batch_norm(self, options: Options) -> bool:
        return bool(getattr(options, "batch_norm", True))

    def build(self, input_shape: tuple[int, ...], num_classes: int, options: Options) -> nn.Module:
        in_channels, _, _ = _image_shape(self.name, input_shape)
        _check_classes(self.name, num_classes)
        batch_norm = self._batch_norm(options)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        blocks["stem"] = conv_module(in_channels, self.stem_channels, 3, 1, batch_norm)
        channels = self.stem_channels
        counts = {"inc": 0, "down": 0}
        for kind, c1, c3 in INCEPTION_PLAN:
            counts[kind] += 1
            block: InceptionModule | DownsampleModule
            if kind == "inc":
                block = InceptionModule(channels, c1, c3, batch_norm)
            else:
                block = DownsampleModule(channels, c3, batch_norm)
            blocks[f"{kind}{counts[kind]}"] = block
            channels = block.out_channels
        blocks["pool"] = nn.AdaptiveAvgPool2d(1)
        blocks["flatten"] = nn.Flatten()
        blocks["fc"] = nn.Linear(channels, num_classes)
        return nn.Sequential(blocks)


class SmallInceptionNoBN(SmallInception):
    """Zhang et al. (2017), Table 1 "Inception w/o BatchNorm": :class:`SmallInception`
    with every BatchNorm2d removed (conv module = Conv2d → ReLU). Same 1,649,402
    parameters on a 28×28×3 input with 10 classes. Without running statistics it
    trains under ``torch.func.vmap`` (tested)."""

    name: ClassVar[str] = "small-inception-nobn"
    description: ClassVar[str] = (
        "Zhang et al. 2017 small Inception without batch norm (1,649,402 params on CIFAR-10)"
    )
    Options = InceptionNoBNOptions
    vmappable: ClassVar[bool] = True

    def _batch_norm(self, options: Options) -> bool:
        return False


