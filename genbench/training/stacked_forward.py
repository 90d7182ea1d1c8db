"""The forward pass of a whole ensemble as patch products, grouped convolutions and batched products.

``vmap`` runs an ensemble of M members by batching every operation along a member
axis; for a convolution its batching rule folds the members into the channels (one
convolution with ``groups = M``) and moves them out again after every layer, and every
operation pays the batching machinery's dispatch. This module runs the same
arithmetic directly, in a layout chosen for it:

- **First convolution, patch product.** The input needs no gradient, so the first
  convolution is ``unfold`` (the k×k patches of each minibatch, [B·L, C·k²]) times
  the members' stacked filters ([C·k², k·O]): one matrix product whose N dimension
  holds every member's channels, instead of a grouped convolution with C input
  channels per group (one, for digits, which oneDNN runs slowly). This applies to a
  first convolution with one group and numeric padding; others run grouped. Members that draw the same minibatch (one *span*: the same seed
  and training subset) share the patches: the product for a span is
  ``patches · [W_1 … W_k]ᵀ``, which already is the ``channels_last`` layout of
  [B, k·O, H, W]. The spans' blocks are joined along the channels only at the next
  convolution (after the pooling that shrinks them).
- **Later convolutions** run grouped (``groups = M``) on [B, M·C, H, W] in
  ``channels_last`` memory format, the members staying inside the channel axis.
- **ReLU after max-pool.** ``maxpool(relu(h)) = relu(maxpool(h))`` (ReLU, and
  LeakyReLU with a slope ≥ 0, are nondecreasing and piecewise linear), with the same
  gradient; the ReLU then runs on a quarter of the values.
- **Dense part.** At ``Flatten`` the activations move once to [M, B, C·H·W] (each
  member's own C, H, W order; a network that starts with ``Flatten`` starts here);
  every ``Linear`` is one ``baddbmm``.

On the 2-core CPU a training step of the 12-member default conv net takes ≈ 65 ms
against ≈ 95 ms under ``vmap``, and of the 12-member default MLP ≈ 9 ms against
≈ 10 ms (the gap grows as members leave: 1.7 against 2.8 ms with two members);
``benchmarks/RESULTS.md`` has the measurements.

``stacked_plan`` accepts a plain ``nn.Sequential`` (nested plain Sequentials are
opened) whose modules are all of exactly the ``SUPPORTED`` types — a subclass may have
its own ``forward`` and is not trusted — with a ``Flatten`` (start_dim 1) before the
first ``Linear``, at least one ``Linear``, convolutions of one dimension, and pools only
on the maps of a convolution of their own dimension. It returns ``None`` for anything
else and the trainer then uses ``vmap``. Layers that mix channels (``LocalResponseNorm``,
batch norm) are not supported: in this layout neighbouring channels can belong to
different members.

Dropout draws its masks from the global generator for the whole stacked tensor, so in
training mode they differ from the masks ``vmap(randomness="different")`` draws (same
distribution, another stream); everything else is the same arithmetic as ``vmap``, up
to floating-point summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CONVOLUTIONS = (nn.Conv1d, nn.Conv2d)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
#: Parameterless modules that act on every channel (or every feature) on its own.
CHANNELWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Identity,
    *POOLS,
)
SUPPORTED = (*CONVOLUTIONS, *CHANNELWISE, nn.Linear, nn.Flatten, nn.Dropout)
#: Spatial dimensions of each convolution and pooling type.
SPATIAL_DIMS = {nn.Conv1d: 1, nn.MaxPool1d: 1, nn.AvgPool1d: 1, nn.Conv2d: 2, nn.MaxPool2d: 2, nn.AvgPool2d: 2}


@dataclass(frozen=True)
class _Step:
    """One module of the plan: ``kind`` is patch-conv, conv, channelwise, flatten,
    flatten-input (a dense network's first module), linear or dropout."""

    kind: str
    module: nn.Module
    name: str


def _leaves(model: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The leaf modules in running order; only plain ``nn.Sequential`` containers are opened
    (a subclass may have its own ``forward``)."""
    items: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if type(child) is nn.Sequential:
            items += _leaves(child, f"{prefix}{name}.")
        else:
            items.append((f"{prefix}{name}", child))
    return items


def _step(name: str, module: nn.Module, first: bool, flat: bool, spatial: int | None) -> _Step | None:
    """The plan step for ``module``, or None where the layout cannot run it exactly.

    Exact types only: a subclass may have its own ``forward``. ``spatial`` is the number
    of spatial dimensions of the activations (None before the first convolution)."""
    kind = type(module)
    if kind not in SUPPORTED or list(module.buffers()):
        return None
    if kind in CONVOLUTIONS:
        if flat or module.padding_mode != "zeros" or spatial not in (None, SPATIAL_DIMS[kind]):
            return None
        patch = first and module.groups == 1 and not isinstance(module.padding, str)
        return _Step("patch-conv" if patch else "conv", module, name)
    if kind is nn.Flatten:
        return _Step("flatten", module, name) if (module.start_dim, module.end_dim) == (1, -1) else None
    if kind is nn.Linear:
        return _Step("linear", module, name) if flat else None
    if kind is nn.Dropout:
        return _Step("dropout", module, name)
    if kind in POOLS and (flat or spatial != SPATIAL_DIMS[kind]):
        return None  # a pool acts on the maps of a convolution of its own dimension
    return _Step("channelwise", module, name)


def _commutes_with_max(module: nn.Module) -> bool:
    """Nondecreasing and piecewise linear: f(max(a, b)) = max(f(a), f(b)), with the same gradient."""
    return type(module) is nn.ReLU or (type(module) is nn.LeakyReLU and module.negative_slope >= 0)


def stacked_plan(model: nn.Module) -> list[_Step] | None:
    """The plan for ``model``, or ``None`` when this module does not apply (the caller
    then uses ``vmap``)."""
    if type(model) is not nn.Sequential:
        return None
    steps: list[_Step] = []
    flat = False  # True once activations are [M, B, F]
    spatial: int | None = None
    for name, module in _leaves(model):
        step = _step(name, module, first=not steps, flat=flat, spatial=spatial)
        if step is None:
            return None
        if step.kind in ("conv", "patch-conv"):
            spatial = SPATIAL_DIMS[type(module)]
        if step.kind == "flatten":
            if flat:
                continue
            flat = True
            if not steps:  # a dense network: [M, B, …] → [M, B, F] directly
                step = _Step("flatten-input", module, name)
        steps.append(step)
    if not flat or not any(step.kind == "linear" for step in steps):
        return None
    # a max-pool right after a ReLU runs first: fewer values pass through the ReLU
    for i in range(len(steps) - 1):
        if _commutes_with_max(steps[i].module) and type(steps[i + 1].module) in (nn.MaxPool1d, nn.MaxPool2d):
            steps[i], steps[i + 1] = steps[i + 1], steps[i]
    return steps


def _check_rank(module: nn.Module, x: torch.Tensor) -> None:
    expected = 2 + SPATIAL_DIMS[type(module)]
    if x.dim() != expected:
        raise ValueError(f"{type(module).__name__} needs inputs [B, C, …] of {expected} dimensions, got {tuple(x.shape)}")


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _patches(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The convolution's input patches [B·L, C·k…] of ``x`` [B, C, …] and the output's spatial shape."""
    _check_rank(module, x)
    geometry = (module.kernel_size, module.stride, module.padding, module.dilation)
    spatial = tuple(_output_size(x.shape[2 + d], *(g[d] for g in geometry)) for d in range(x.dim() - 2))
    kernel, stride, padding, dilation = geometry
    if isinstance(module, nn.Conv1d):  # as a 2-D convolution over a map of height 1
        x = x.unsqueeze(2)
        kernel, stride, padding, dilation = (1, kernel[0]), (1, stride[0]), (0, padding[0]), (1, dilation[0])
    patches = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)
    return patches.transpose(1, 2).flatten(0, 1), spatial


def _patch_conv(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor, spans) -> list[torch.Tensor]:
    """First convolution of every member, one block [B, k·O, …] per span (``channels_last``
    for 2-D maps); the blocks side by side along the channels are [B, M·O, …].

    ``x`` is [G, B, C, …], row g the minibatch of the members ``spans[g]``."""
    filters = weight.flatten(2)  # [M, O, C·k…]
    blocks = []
    for g, (start, end) in enumerate(spans):
        patches, spatial = _patches(module, x[g])
        # contiguous [C·k…, k·O]: the weight gradient is then patchesᵀ·grad, not (gradᵀ·patches)ᵀ (7× slower)
        w = filters[start:end].flatten(0, 1).t().contiguous()
        out = patches @ w if bias is None else torch.addmm(bias[start:end].flatten(), patches, w)
        blocks.append(out.view(x.shape[1], *spatial, w.shape[1]).movedim(-1, 1))
    return blocks


def _conv(module: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None, h: torch.Tensor, members: int) -> torch.Tensor:
    """Grouped convolution of [B, M·C, …] with stacked filters [M, O, C/g, …]."""
    _check_rank(module, h)
    weight = weight.flatten(0, 1)
    function = F.conv1d
    if isinstance(module, nn.Conv2d):
        function = F.conv2d
        h = h.contiguous(memory_format=torch.channels_last)
        weight = weight.contiguous(memory_format=torch.channels_last)
    else:
        h = h.contiguous()
    return function(
        h,
        weight,
        None if bias is None else bias.flatten(),
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        groups=members * module.groups,
    )


def _members_in_channels(x: torch.Tensor) -> torch.Tensor:
    """[M, B, C, …] → [B, M·C, …] (``channels_last`` for 2-D maps)."""
    members, batch = x.shape[0], x.shape[1]
    h = x.transpose(0, 1).reshape(batch, members * x.shape[2], *x.shape[3:])
    return h.contiguous(memory_format=torch.channels_last) if h.dim() == 4 else h


def _check_spans(spans: list[tuple[int, int]], rows: int, members: int) -> None:
    """Spans must be non-empty, contiguous, in order, one per input row, covering every member."""
    ends = [0] + [end for _, end in spans]
    if len(spans) != rows or any(start != ends[g] or end <= start for g, (start, end) in enumerate(spans)) or ends[-1] != members:
        raise ValueError(f"spans {spans} are not {rows} contiguous non-empty ranges covering {members} members")


def stacked_forward(
    plan: list[_Step],
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    spans: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Logits [M, B, classes] of the M members whose stacked parameters are ``params``
    (named as in ``model.named_parameters()``, each [M, …]).

    ``x`` is [M, B, C, …], one minibatch per member; or, with ``spans``, [G, B, C, …]:
    row g is the minibatch shared by members ``spans[g][0]:spans[g][1]``."""
    members = next(iter(params.values())).shape[0]
    if spans is None:
        spans = [(i, i + 1) for i in range(members)]
    _check_spans(spans, x.shape[0], members)
    batch = x.shape[1]
    h = None
    blocks: list[torch.Tensor] | None = None  # per-span blocks after a patch convolution
    for step in plan:
        module = step.module
        if step.kind == "patch-conv":
            blocks = _patch_conv(module, params[f"{step.name}.weight"], params.get(f"{step.name}.bias"), x, spans)
            continue
        if blocks is not None:
            if step.kind in ("channelwise", "dropout"):  # these act per channel: no need to join the blocks yet
                blocks = [F.dropout(b, module.p, module.training) if step.kind == "dropout" else module(b) for b in blocks]
                continue
            h, blocks = (blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)), None
        if h is None:  # a plan that does not start with a patch convolution: one input row per member
            rows = x if len(spans) == members else torch.cat(
                [x[g].expand(end - start, *x.shape[1:]) for g, (start, end) in enumerate(spans)]
            )
            if step.kind == "flatten-input":
                h = rows.flatten(2)
                continue
            h = _members_in_channels(rows)
        if step.kind == "conv":
            h = _conv(module, params[f"{step.name}.weight"], params.get(f"{step.name}.bias"), h, members)
        elif step.kind == "flatten":
            # [B, M·C, …] → [M, B, C·…]: each member's features in its own (C, H, W) order
            h = h.reshape(batch, members, -1).transpose(0, 1)
        elif step.kind == "linear":
            weight = params[f"{step.name}.weight"].transpose(1, 2)
            bias = params.get(f"{step.name}.bias")
            h = torch.bmm(h, weight) if bias is None else torch.baddbmm(bias[:, None], h, weight)
        elif step.kind == "dropout":
            h = F.dropout(h, module.p, module.training)
        else:
            h = module(h)
    return h
