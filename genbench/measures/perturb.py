"""Many perturbed copies of a network, evaluated on the training set at once.

A perturbation measure (PAC-Bayes flatness, sharpness) evaluates the network at
many parameter vectors θ_1 … θ_D near the trained one. Rather than copying the
network D times, the D parameter sets are stacked along a leading *draw* axis and
evaluated together with ``torch.func.functional_call`` under ``torch.func.vmap``,
chunked over draws and over examples so that the activations stay within a memory
budget. A network that ``vmap`` cannot handle is evaluated one draw at a time
instead (same results). On the CPU, networks with convolutions use that loop by
default: vmap turns a convolution with per-draw kernels into a grouped convolution,
which measured slower there than the loop (see ``vmap_by_default``).

Two layouts:

- **shared** (default): every draw is evaluated on every example; the result holds,
  per draw, the number of correct predictions and the summed cross-entropy.
- **paired**: draw i is evaluated on example i only (D = number of examples), e.g. a
  fresh network for each example, which gives independent per-example samples of
  a stochastic classifier's error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from genbench.measures.weights import weight_layers
from genbench.inference import BYTES_PER_FLOAT, activation_floats

#: Default bytes the activations and stacked parameters of one chunk may take.
DEFAULT_MEMORY_BYTES = 1 << 28
#: Examples of the first chunk when an early stop is asked for (later chunks double).
EARLY_STOP_FIRST_CHUNK = 128
#: Examples evaluated together in the shared layout (at most).
MAX_EXAMPLES_PER_CHUNK = 4096

#: ``draw_parameters(start, stop)``: the parameters of draws start … stop − 1, each
#: stacked along a new leading axis, keyed by parameter name (a subset of the model's
#: named parameters; the others keep their values).
ParameterSource = Callable[[int, int], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class PerturbedMetrics:
    """Per draw: correct predictions, summed cross-entropy and examples evaluated."""

    correct: torch.Tensor  # [draws], int64
    loss_sum: torch.Tensor  # [draws], float64
    examples: torch.Tensor  # [draws], int64
    vmapped: bool

    @property
    def accuracy(self) -> torch.Tensor:
        """Training accuracy of each draw (float64)."""
        return self.correct.double() / self.examples.double()

    @property
    def loss(self) -> torch.Tensor:
        """Mean cross-entropy of each draw."""
        return self.loss_sum / self.examples.double()


def perturbable_parameters(model: nn.Module, include_biases: bool = True) -> dict[str, torch.Tensor]:
    """name → parameter (detached) of every linear and convolutional layer's weight, and its
    bias when ``include_biases``; batch-norm and other parameters are left out."""
    named = dict(model.named_parameters())
    chosen = {}
    for layer_name, layer in weight_layers(model):
        prefix = f"{layer_name}." if layer_name else ""
        for kind in ("weight", "bias") if include_biases else ("weight",):
            if getattr(layer, kind, None) is not None:
                chosen[prefix + kind] = named[prefix + kind].detach()
    return chosen


def standard_normal_like(
    parameters: dict[str, torch.Tensor], draws: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """``draws`` standard-normal tensors per parameter, [draws, *shape], drawn on the CPU with
    ``generator`` (reproducible across devices) and moved to each parameter's device."""
    return {
        name: torch.randn((draws, *p.shape), generator=generator, dtype=torch.float32).to(p.device)
        for name, p in parameters.items()
    }


def chunk_sizes(
    activation_floats: int, parameter_floats: int, draws: int, examples: int, paired: bool, memory_bytes: int
) -> tuple[int, int]:
    """(draws per chunk, examples per chunk) whose activations and stacked parameters fit
    ``memory_bytes`` (at least one draw and one example)."""
    budget = max(memory_bytes // BYTES_PER_FLOAT, 1)
    if paired:
        per_draw = parameter_floats + activation_floats
        return max(1, min(draws, budget // per_draw)), 1
    per_example = max(1, budget // activation_floats)
    examples_per_chunk = max(1, min(examples, MAX_EXAMPLES_PER_CHUNK, per_example))
    per_draw = parameter_floats + activation_floats * examples_per_chunk
    return max(1, min(draws, budget // per_draw)), examples_per_chunk


def _vmapped_logits(model: nn.Module, parameters: dict[str, torch.Tensor], inputs: torch.Tensor, paired: bool):
    def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params, (x,))

    if paired:
        return vmap(forward, in_dims=(0, 0))(parameters, inputs[:, None])  # [draws, 1, K]
    return vmap(forward, in_dims=(0, None))(parameters, inputs)  # [draws, n, K]


def _looped_logits(model: nn.Module, parameters: dict[str, torch.Tensor], inputs: torch.Tensor, paired: bool):
    draws = next(iter(parameters.values())).shape[0]
    outputs = []
    for i in range(draws):
        params = {name: value[i] for name, value in parameters.items()}
        x = inputs[i : i + 1] if paired else inputs
        outputs.append(functional_call(model, params, (x,)))
    return torch.stack(outputs)


def _score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per draw: correct predictions and summed cross-entropy of logits [draws, n, K], labels [draws, n]."""
    correct = (logits.argmax(-1) == labels).sum(-1)
    losses = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none")
    return correct, losses.reshape(labels.shape).double().sum(-1)


#: ``stop_early(correct, examples_done)``: called in the shared layout after each chunk of
#: examples with the correct predictions per draw so far; returning True ends the evaluation
#: (the metrics then cover the first ``examples_done`` examples).
EarlyStop = Callable[[torch.Tensor, int], bool]


def vmap_by_default(model: nn.Module, device: torch.device) -> bool:
    """Whether vmap is the faster choice: always on an accelerator; on the CPU only for
    networks without convolutions (vmap turns a convolution with per-draw kernels into a
    grouped convolution, which measured about 2× slower on the CPU than a loop over draws)."""
    if device.type != "cpu":
        return True
    return not any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules())


@torch.no_grad()
def perturbed_metrics(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    draws: int,
    draw_parameters: ParameterSource,
    paired: bool = False,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    use_vmap: bool | None = None,
    stop_early: EarlyStop | None = None,
) -> PerturbedMetrics:
    """Accuracy and cross-entropy on (``inputs``, ``labels``) of ``draws`` perturbed copies of
    ``model`` (which should be in eval mode; it is not modified).

    ``draw_parameters(start, stop)`` gives the parameters of draws start … stop − 1 stacked
    along a leading axis (see ``ParameterSource``); it is called once per chunk of draws, so
    the caller may generate them lazily. With ``paired`` draw i sees example i only
    (``draws`` must equal the number of examples). ``use_vmap`` None chooses by
    ``vmap_by_default``; a model vmap cannot handle falls back to the loop. ``stop_early``
    (shared layout) allows ending once the outcome is decided. Runs on the device of ``inputs``.
    """
    n = int(inputs.shape[0])
    if paired and draws != n:
        raise ValueError(f"paired evaluation needs one draw per example: {draws} draws, {n} examples")
    vmapped = vmap_by_default(model, inputs.device) if use_vmap is None else use_vmap
    labels = labels.to(inputs.device)
    if draws == 0 or n == 0:
        empty = torch.zeros(draws, dtype=torch.int64)
        return PerturbedMetrics(empty, empty.double(), empty + (1 if paired else n), vmapped)
    parameter_floats = sum(p.numel() for p in model.parameters())  # an upper bound on those perturbed
    activation = max(activation_floats(model, tuple(inputs.shape[1:]), 1), 1)
    step_draws, step_examples = chunk_sizes(activation, parameter_floats, draws, n, paired, memory_bytes)
    if paired:
        return _paired_metrics(model, inputs, labels, draw_parameters, step_draws, vmapped)
    return _shared_metrics(
        model, inputs, labels, draws, draw_parameters, step_draws, step_examples, vmapped, stop_early
    )


def _paired_metrics(model, inputs, labels, draw_parameters, step_draws, vmapped) -> PerturbedMetrics:
    n = len(inputs)
    correct = torch.zeros(n, dtype=torch.int64)
    loss_sum = torch.zeros(n, dtype=torch.float64)
    for start in range(0, n, step_draws):
        stop = min(n, start + step_draws)
        logits, vmapped = _evaluate(model, draw_parameters(start, stop), inputs[start:stop], True, vmapped)
        correct[start:stop], loss_sum[start:stop] = (t.cpu() for t in _score(logits, labels[start:stop, None]))
    return PerturbedMetrics(correct, loss_sum, torch.ones(n, dtype=torch.int64), vmapped)


def _shared_metrics(
    model, inputs, labels, draws, draw_parameters, step_draws, step_examples, vmapped, stop_early
) -> PerturbedMetrics:
    n = len(inputs)
    correct = torch.zeros(draws, dtype=torch.int64)
    loss_sum = torch.zeros(draws, dtype=torch.float64)
    bounds = [(start, min(draws, start + step_draws)) for start in range(0, draws, step_draws)]
    chunks = [draw_parameters(start, stop) for start, stop in bounds]
    done = 0
    # with an early stop, chunks start small and double (up to the memory-bound size), so a
    # decided outcome is seen early while a full pass stays made of a few large chunks
    size = min(step_examples, EARLY_STOP_FIRST_CHUNK) if stop_early is not None else step_examples
    first = 0
    while first < n:
        last = min(n, first + size)
        x, y = inputs[first:last], labels[first:last]
        for (start, stop), parameters in zip(bounds, chunks):
            logits, vmapped = _evaluate(model, parameters, x, False, vmapped)
            hits, losses = _score(logits, y.expand(stop - start, -1))
            correct[start:stop] += hits.cpu()
            loss_sum[start:stop] += losses.cpu()
        done = last
        if stop_early is not None and done < n and stop_early(correct, done):
            break
        first, size = last, min(2 * size, step_examples)
    return PerturbedMetrics(correct, loss_sum, torch.full((draws,), done, dtype=torch.int64), vmapped)


def _evaluate(
    model: nn.Module, parameters: dict[str, torch.Tensor], inputs: torch.Tensor, paired: bool, vmapped: bool
) -> tuple[torch.Tensor, bool]:
    """Logits [draws, n, K] under vmap when it works, else draw by draw; and whether vmap was used."""
    if vmapped:
        try:
            return _vmapped_logits(model, parameters, inputs, paired), True
        except (RuntimeError, NotImplementedError, ValueError) as error:
            if isinstance(error, torch.OutOfMemoryError):
                raise
    return _looped_logits(model, parameters, inputs, paired), False
