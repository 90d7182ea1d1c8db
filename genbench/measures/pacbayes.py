"""PAC-Bayes measures: flatness under Gaussian weight noise, the bounds built on it, and a
valid PAC-Bayes-kl bound turned into a capability score.

Conventions shared by the family (Jiang et al. 2020, Appendix C; Dziugaite et al. 2020's code):

- Batch norm is folded into the preceding layer first (``fold_batch_norm``); the noise is
  added to the weights *and biases* of the linear and convolutional layers of the folded
  network (``perturb_biases``, default true, as Dziugaite et al.'s code perturbs every
  parameter); the norms ‖w‖, ‖w − w⁰‖ run over the weights only (no biases, no batch norm).
- σ is the standard deviation of the noise (``torch.normal``'s std), not its variance: the
  public code of Dziugaite et al. passes σ² as the std, which REFERENCE.md names as a pitfall.
- The σ search is a bisection on [0, σ_max] for the σ at which the mean training accuracy
  (under the labels the model was trained on) over Monte-Carlo draws is ``target_drop`` below
  the unperturbed one; it stops as soon as |drop − target| ≤ ``tolerance`` or after
  ``max_steps`` steps. The same standard-normal draws z are used at every step (common
  random numbers; noise = scale(σ)·z), so the estimated drop moves smoothly with σ. The draws
  of a step are evaluated together (``genbench.measures.perturb``). The search is shared: the
  three isotropic measures use one σ, the three magnitude-aware measures one σ', each found once
  per run and cached at module level, keyed by the run id, a digest of the weights and the
  search options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field

from genbench.errors import MeasureError
from genbench.measures.base import (
    BaseMeasure,
    Estimate,
    MeasureContext,
    SizeNormalizedOptions,
    standard_error,
)
from genbench.measures.perturb import perturbable_parameters, perturbed_metrics, standard_normal_like
from genbench.measures.quantities import folded_weights, weight_changes
from genbench.measures.weights import fold_batch_norm
from genbench.schemas import Options, content_hash
from genbench.inference import predict
from genbench.seeding import derive_seed

SOURCE_JIANG = (
    "Jiang et al. 2020, 'Fantastic generalization measures and where to find them', Appendix C; "
    "σ search as in Dziugaite et al. 2020's code, with σ as the std"
)

# ---------------------------------------------------------------------------
# The σ search
# ---------------------------------------------------------------------------


class SigmaSearchOptions(SizeNormalizedOptions):
    target_drop: float = Field(0.1, gt=0, lt=1, description="training-accuracy drop the noise must cause")
    tolerance: float = Field(0.01, gt=0, description="stop when |drop − target_drop| ≤ tolerance")
    sigma_max: float = Field(2.0, gt=0, description="upper end of the bisection interval [0, sigma_max]")
    max_steps: int = Field(15, ge=1, description="bisection steps at most")
    draws: int = Field(10, ge=1, description="Monte-Carlo noise draws per step (evaluated together)")
    perturb_biases: bool = Field(True, description="add noise to the biases too (not only the weights)")
    seed: int = Field(0, description="seed of the noise draws (combined with the run's seed)")


class MagnitudeSearchOptions(SigmaSearchOptions):
    epsilon: float = Field(1e-3, gt=0, description="ε: noise std per parameter is sqrt(σ'²·w_i² + ε²)")


@dataclass(frozen=True)
class SigmaSearch:
    """Outcome of a σ search: σ, the accuracy drop measured there, the steps taken."""

    sigma: float
    drop: float
    steps: int
    base_accuracy: float
    converged: bool
    drop_stderr: float

    def details(self) -> dict[str, float | int | str | None]:
        return {
            "sigma": self.sigma,
            "accuracy_drop": self.drop,
            "accuracy_drop_stderr": self.drop_stderr,
            "bisection_steps": self.steps,
            "converged": int(self.converged),
            "train_accuracy": self.base_accuracy,
        }


_UNFINISHED = SigmaSearch(math.nan, math.nan, 0, math.nan, False, math.nan)


def search_key(options: SigmaSearchOptions, magnitude: bool) -> str:
    """The run cache's key of the σ search these options describe (``normalize_by_m`` aside)."""
    search_options = options.model_dump(mode="json", exclude={"normalize_by_m"})
    return "pacbayes:sigma-search:" + content_hash({"magnitude": magnitude, "options": search_options})


def shared_sigma_search(ctx: MeasureContext, options: SigmaSearchOptions) -> SigmaSearch:
    """The σ search for this run and these options, computed once per run (``ctx.cache``) and shared
    by the measures that read it (pacbayes-flatness with -init/-orig, their magnitude forms)."""
    magnitude = isinstance(options, MagnitudeSearchOptions)
    return ctx.cached(search_key(options, magnitude), lambda: sigma_search(ctx, options))


def noise_scales(
    parameters: dict[str, torch.Tensor], sigma: float, epsilon: float | None
) -> dict[str, torch.Tensor | float]:
    """Noise std per parameter: σ (isotropic), or sqrt(σ²·w_i² + ε²) (magnitude-aware)."""
    if epsilon is None:
        return {name: sigma for name in parameters}
    return {name: torch.sqrt(sigma**2 * p.pow(2) + epsilon**2) for name, p in parameters.items()}


@dataclass(frozen=True)
class StepOutcome:
    """One search step: the accuracy drop (None when the step stopped as soon as its side of
    the target band was certain), which side it fell on, and the drop's standard error."""

    drop: float | None
    too_much: bool
    stderr: float


class NoisyTraining:
    """The folded network, its perturbable parameters, fixed standard-normal draws z_k and the
    training set: evaluates the accuracy drop under noise scale(σ)·z_k."""

    def __init__(self, ctx: MeasureContext, options: SigmaSearchOptions) -> None:
        self.epsilon = options.epsilon if isinstance(options, MagnitudeSearchOptions) else None
        self.model = fold_batch_norm(ctx.model).to(ctx.device).eval()
        self.parameters = perturbable_parameters(self.model, options.perturb_biases)
        if not self.parameters:
            raise MeasureError("the PAC-Bayes σ search needs a network with linear or convolutional layers")
        self.finite = all(bool(torch.isfinite(p).all()) for p in self.parameters.values())
        self.inputs, self.labels = ctx.train_inputs.to(ctx.device), ctx.train_labels.to(ctx.device)
        logits = predict(self.model, self.inputs, ctx.device)
        self.base = (logits.argmax(-1) == self.labels.cpu()).double().mean().item()
        seed = derive_seed(ctx.spec.seed, f"pacbayes-sigma-search:{options.seed}")
        self.draws = options.draws
        self.noise = standard_normal_like(self.parameters, self.draws, torch.Generator().manual_seed(seed))

    def step(self, sigma: float, target: float, tolerance: float, early_stop: bool) -> StepOutcome:
        """The drop at σ, and whether it exceeds ``target``. With ``early_stop`` the evaluation
        ends as soon as even the best (or worst) case for the examples not yet seen leaves the
        drop above target + tolerance (or below target − tolerance), which decides the step
        exactly as the full evaluation would."""
        scales = noise_scales(self.parameters, sigma, self.epsilon)
        n, draws = len(self.inputs), self.draws

        def draw_parameters(start: int, stop: int) -> dict[str, torch.Tensor]:
            return {k: p + scales[k] * self.noise[k][start:stop] for k, p in self.parameters.items()}

        def drop_range(correct: torch.Tensor, done: int) -> tuple[float, float]:
            seen = correct.sum().item()
            return self.base - (seen + draws * (n - done)) / (draws * n), self.base - seen / (draws * n)

        def decided(correct: torch.Tensor, done: int) -> bool:
            smallest, largest = drop_range(correct, done)
            return smallest > target + tolerance or largest < target - tolerance

        metrics = perturbed_metrics(
            self.model, self.inputs, self.labels, draws, draw_parameters, stop_early=decided if early_stop else None
        )
        evaluated = int(metrics.examples[0])
        if evaluated < n:
            return StepOutcome(None, drop_range(metrics.correct, evaluated)[0] > target + tolerance, math.nan)
        accuracy = metrics.accuracy
        drop = self.base - accuracy.mean().item()
        stderr = standard_error(accuracy)
        return StepOutcome(drop, drop > target, stderr)


def sigma_search(ctx: MeasureContext, options: SigmaSearchOptions) -> SigmaSearch:
    """Bisection on [0, σ_max] for the σ whose noise lowers the training accuracy by the target.

    drop(σ) = acc(w) − mean_k acc(w + scale(σ)·z_k), z_k standard normal (k = 1 … draws), fixed
    for the whole search. Step: σ = midpoint; stop if |drop − target| ≤ tolerance; else the
    upper end moves to σ when drop > target, the lower end otherwise. Returns the last σ tried.
    A step stops evaluating examples once its side of the target band is certain whatever the
    remaining examples give (exact: the search takes the same path as with full evaluations);
    the step that ends the search is always evaluated on the whole training set.
    """
    noisy = NoisyTraining(ctx, options)
    if not noisy.finite:
        return _UNFINISHED
    target, tolerance = options.target_drop, options.tolerance
    lower, upper = 0.0, options.sigma_max
    for step in range(1, options.max_steps + 1):
        sigma = (lower + upper) / 2
        last = step == options.max_steps
        outcome = noisy.step(sigma, target, tolerance, early_stop=not last)
        if outcome.drop is not None and (abs(outcome.drop - target) <= tolerance or last):
            converged = abs(outcome.drop - target) <= tolerance
            return SigmaSearch(sigma, outcome.drop, step, noisy.base, converged, outcome.stderr)
        if outcome.too_much:
            upper = sigma
        else:
            lower = sigma
    raise AssertionError("unreachable: the last step always returns")


# ---------------------------------------------------------------------------
# Formulas
# ---------------------------------------------------------------------------


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer weights (``norms.folded_weights``, ``norms.weight_changes``) as one vector on the CPU."""
    return torch.cat([t.reshape(-1).cpu() for t in tensors])


def pacbayes_bound_value(squared_norm: float, sigma: float, m: int) -> float:
    """Jiang et al.'s pacbayes.init / .orig: ‖v‖²/(4σ²) + log(m/σ) + 10."""
    return squared_norm / (4 * sigma**2) + math.log(m / sigma) + 10


def magnitude_bound_value(
    reference: torch.Tensor, distance: torch.Tensor, sigma: float, epsilon: float, m: int
) -> float:
    """Jiang et al.'s pacbayes.mag.init / .orig, as Dziugaite et al.'s code computes them:

    ¼ Σ_i log[(ε² + (σ'² + 1)·‖v‖²/ω) / (ε² + σ'²·(w_i − w⁰_i)²)] + log(m/σ') + 10,

    v = ``reference`` (w − w⁰ for .init, w for .orig), ``distance`` = w − w⁰, ω = number of weights."""
    omega = distance.numel()
    numerator = epsilon**2 + (sigma**2 + 1) * reference.double().pow(2).sum() / omega
    denominator = epsilon**2 + sigma**2 * distance.double().pow(2)
    return 0.25 * torch.log(numerator / denominator).sum().item() + math.log(m / sigma) + 10


class _SearchMeasure(BaseMeasure):
    """A measure computed from the shared σ search."""

    requires: ClassVar[frozenset[str]] = frozenset({"train_data"})
    source: ClassVar[str] = SOURCE_JIANG
    Options = SigmaSearchOptions

    def compute(self, ctx: MeasureContext, options: SigmaSearchOptions) -> Estimate:
        search = shared_sigma_search(ctx, options)
        if math.isnan(search.sigma):
            return Estimate(math.nan, {"reason": "non-finite weights"})
        value = self.value(ctx, options, search.sigma)
        return Estimate(self.normalized(value, ctx, options), search.details())

    def value(self, ctx: MeasureContext, options: SigmaSearchOptions, sigma: float) -> float:
        raise NotImplementedError


class PacBayesFlatness(_SearchMeasure):
    """PAC-Bayes flatness 1/σ²: σ is the largest std of Gaussian weight noise that lowers the
    training accuracy by 0.1.

    pacbayes-flatness = 1/σ², σ from the shared bisection search (see the module docstring:
    noise N(0, σ²) on every weight and bias of the batch-norm-folded network; [0, 2], ≤ 15
    steps, 10 draws per step, stop within 0.01 of the target drop 0.1). Source: Jiang et al.
    2020, Appendix C, "pacbayes.flatness".
    """

    name: ClassVar[str] = "pacbayes-flatness"

    def value(self, ctx: MeasureContext, options: SigmaSearchOptions, sigma: float) -> float:
        return 1.0 / sigma**2


class PacBayesInit(_SearchMeasure):
    """PAC-Bayes bound with the prior at initialization: ‖w − w⁰‖²/(4σ²) + log(m/σ) + 10.

    w, w⁰: the weights (no biases, no batch norm) of the folded trained and initial networks;
    σ: the shared flatness search (as pacbayes-flatness); m: training-set size. Source:
    Jiang et al. 2020, Appendix C, "pacbayes.init".
    """

    name: ClassVar[str] = "pacbayes-init"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "init_weights"})

    def value(self, ctx: MeasureContext, options: SigmaSearchOptions, sigma: float) -> float:
        distance = flat(weight_changes(ctx))
        return pacbayes_bound_value(distance.pow(2).sum().item(), sigma, ctx.num_train)


class PacBayesOrig(_SearchMeasure):
    """PAC-Bayes bound with the prior at the origin: ‖w‖²/(4σ²) + log(m/σ) + 10.

    w: the weights (no biases, no batch norm) of the folded trained network; σ: the shared
    flatness search (as pacbayes-flatness); m: training-set size. Source: Jiang et al. 2020,
    Appendix C, "pacbayes.orig".
    """

    name: ClassVar[str] = "pacbayes-orig"

    def value(self, ctx: MeasureContext, options: SigmaSearchOptions, sigma: float) -> float:
        return pacbayes_bound_value(flat(folded_weights(ctx)).pow(2).sum().item(), sigma, ctx.num_train)


class _MagnitudeMeasure(_SearchMeasure):
    Options = MagnitudeSearchOptions


class PacBayesMagFlatness(_MagnitudeMeasure):
    """Magnitude-aware PAC-Bayes flatness 1/σ'²: noise std per parameter sqrt(σ'²·w_i² + ε²).

    pacbayes-mag-flatness = 1/σ'², σ' the largest scale for which noise u_i ~ N(0, σ'²·w_i² + ε²)
    (std sqrt(σ'²·w_i² + ε²), ε = 1e-3, on every weight and bias of the folded network) lowers
    the training accuracy by 0.1; same bisection as pacbayes-flatness. Source: Jiang et al.
    2020, Appendix C, "pacbayes.mag.flatness" (Dziugaite et al.'s best measure).
    """

    name: ClassVar[str] = "pacbayes-mag-flatness"

    def value(self, ctx: MeasureContext, options: MagnitudeSearchOptions, sigma: float) -> float:
        return 1.0 / sigma**2


class PacBayesMagInit(_MagnitudeMeasure):
    """Magnitude-aware PAC-Bayes bound, prior at initialization.

    ¼ Σ_i log[(ε² + (σ'² + 1)·‖w − w⁰‖²/ω) / (ε² + σ'²·(w_i − w⁰_i)²)] + log(m/σ') + 10,
    over the ω weights (no biases, no batch norm) of the folded networks; σ' from the shared
    magnitude-aware search (as pacbayes-mag-flatness). Source: Jiang et al. 2020, Appendix C,
    "pacbayes.mag.init", with log(m/σ') as in Dziugaite et al. 2020's code.
    """

    name: ClassVar[str] = "pacbayes-mag-init"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "init_weights"})

    def value(self, ctx: MeasureContext, options: MagnitudeSearchOptions, sigma: float) -> float:
        distance = flat(weight_changes(ctx))
        return magnitude_bound_value(distance, distance, sigma, options.epsilon, ctx.num_train)


class PacBayesMagOrig(_MagnitudeMeasure):
    """Magnitude-aware PAC-Bayes bound, prior at the origin.

    ¼ Σ_i log[(ε² + (σ'² + 1)·‖w‖²/ω) / (ε² + σ'²·(w_i − w⁰_i)²)] + log(m/σ') + 10 (the
    denominator keeps w − w⁰, as in Jiang et al.'s formula and Dziugaite et al.'s code); σ' from
    the shared magnitude-aware search. Source: Jiang et al. 2020, Appendix C, "pacbayes.mag.orig".
    """

    name: ClassVar[str] = "pacbayes-mag-orig"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "init_weights"})

    def value(self, ctx: MeasureContext, options: MagnitudeSearchOptions, sigma: float) -> float:
        weights = flat(folded_weights(ctx))
        distance = flat(weight_changes(ctx))
        return magnitude_bound_value(weights, distance, sigma, options.epsilon, ctx.num_train)


# ---------------------------------------------------------------------------
# A valid PAC-Bayes-kl bound, as a capability score
# ---------------------------------------------------------------------------


def binary_kl(q: float, p: float) -> float:
    """kl(q‖p) = q·log(q/p) + (1 − q)·log((1 − q)/(1 − p)), with 0·log 0 = 0."""
    total = 0.0
    if q > 0:
        total += math.inf if p <= 0 else q * math.log(q / p)
    if q < 1:
        total += math.inf if p >= 1 else (1 - q) * math.log((1 - q) / (1 - p))
    return total


def kl_inverse(q: float, budget: float, iterations: int = 100) -> float:
    """kl⁻¹(q, c) = sup{p ∈ [q, 1] : kl(q‖p) ≤ c}, by bisection (kl(q‖·) increases on [q, 1])."""
    if math.isnan(q) or math.isnan(budget):
        return math.nan
    q = min(max(q, 0.0), 1.0)
    if budget <= 0 or q >= 1:
        return q
    lower, upper = q, 1.0
    if binary_kl(q, upper) <= budget:
        return 1.0
    for _ in range(iterations):
        middle = (lower + upper) / 2
        if binary_kl(q, middle) <= budget:
            lower = middle
        else:
            upper = middle
    return upper


def kl_budget(kl_divergence: float, m: int, delta: float) -> float:
    """The right-hand side of the PAC-Bayes-kl bound: (KL(Q‖P) + log(2√m/δ))/m."""
    return (kl_divergence + math.log(2 * math.sqrt(m) / delta)) / m


def pac_bayes_kl_bound(gibbs_error: float, kl_divergence: float, m: int, delta: float) -> float:
    """Seeger / Maurer: with probability ≥ 1 − δ, e_Q ≤ kl⁻¹(ê_Q, (KL(Q‖P) + log(2√m/δ))/m)."""
    return kl_inverse(gibbs_error, kl_budget(kl_divergence, m, delta))


def sampled_error_upper(mean_error: float, samples: int, delta: float) -> float:
    """Langford & Caruana 2001 (sample convexity): from ``samples`` independent draws of the
    Gibbs classifier's error, ê_Q ≤ kl⁻¹(mean, log(2/δ')/n) with probability ≥ 1 − δ'."""
    return kl_inverse(mean_error, math.log(2 / delta) / samples)


def rescaled_capability(bound: float, num_classes: int) -> float:
    """max(0, (1 − bound − 1/K) / (1 − 1/K))."""
    chance = 1.0 / num_classes
    return max(0.0, (1.0 - bound - chance) / (1.0 - chance))


class PacBayesBoundOptions(Options):
    delta: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="failure probability: half for the PAC-Bayes bound, half for the Monte-Carlo estimate",
    )
    sigma_min: float = Field(1e-3, gt=0, description="smallest σ of the geometric grid")
    sigma_max: float = Field(1.0, gt=0, description="largest σ of the geometric grid")
    grid_points: int = Field(16, ge=1, description="σ values on the grid (the union bound splits δ over them)")
    passes: int = Field(1, ge=1, description="fresh networks per training example for ê_Q (n = passes·m samples)")
    screening_draws: int = Field(2, ge=1, description="noise draws per grid σ to pick the σ to certify")
    perturb_biases: bool = Field(True, description="the posterior and prior cover the biases too")
    seed: int = Field(0, description="seed of the noise draws (combined with the run's seed)")


@dataclass(frozen=True)
class BoundTerms:
    """Every grid σ's data-free part: KL(Q‖P) and the PAC-Bayes-kl budget (KL + log(2√m/δ))/m."""

    sigma: float
    kl: float
    budget: float


class PacBayesBound(BaseMeasure):
    """Capability from a valid PAC-Bayes-kl bound on the error of a Gaussian posterior around
    the trained weights, with the prior at the initialization.

    Q = N(θ, σ²I), P = N(θ⁰, σ²I) over the weights and biases (``perturb_biases``) of the
    batch-norm-folded trained and initial networks (folding the initial network uses its
    initial running statistics, so P does not depend on the data); KL(Q‖P) = ‖θ − θ⁰‖²/(2σ²).
    Seeger / Maurer: with probability ≥ 1 − δ_b, kl(ê_Q‖e_Q) ≤ (KL + log(2√m/δ_b))/m.
    σ ranges over a fixed geometric grid of ``grid_points`` values in [σ_min, σ_max]; the union
    bound gives each grid σ δ_b = (δ/2)/J. ê_Q (the Gibbs classifier's training error) is
    estimated by Monte Carlo: a fresh network θ + σz is drawn for every training example (and
    every pass), so the n = passes·m 0/1 errors are independent with mean ê_Q and the
    sample-convexity correction of Langford & Caruana 2001 (Dziugaite & Roy 2017) applies:
    ê_Q ≤ kl⁻¹(mean, log(2/δ_mc)/n), δ_mc = (δ/2)/J. The σ to certify is the grid σ with the
    smallest bound estimated from ``screening_draws`` shared draws (σ whose bound would exceed
    1 − 1/K even at ê_Q = 0 are skipped); any choice is covered by the union bound. When no
    grid σ can or, by that estimate, will bring the bound below 1 − 1/K, the capability is 0
    without certifying (details: ``certified`` = 0). Otherwise
    bound = kl⁻¹(ê_Q upper, (KL + log(2√m/δ_b))/m), inverted by bisection, and
    capability = max(0, (1 − bound − 1/K)/(1 − 1/K)).

    The errors are counted against the labels the model was trained on, so the bound holds
    for the error under the training-label distribution (corrupted labels included). At
    p_c = 1 that error is ≥ 1 − 1/K for every classifier (the labels are independent of the
    inputs), so a valid bound gives capability 0: the corruption axiom holds by construction.
    Sources: Seeger 2002, Maurer 2004 (PAC-Bayes-kl); Langford & Caruana 2001 and Dziugaite &
    Roy 2017 (Monte-Carlo correction, prior at initialization).
    """

    name: ClassVar[str] = "pacbayes-bound"
    kind: ClassVar[str] = "capability"
    requires: ClassVar[frozenset[str]] = frozenset({"train_data", "init_weights"})
    Options = PacBayesBoundOptions
    source: ClassVar[str] = (
        "Seeger 2002 / Maurer 2004 PAC-Bayes-kl bound; Langford & Caruana 2001, Dziugaite & Roy 2017"
    )

    def compute(self, ctx: MeasureContext, options: PacBayesBoundOptions) -> Estimate:
        model = fold_batch_norm(ctx.model).to(ctx.device).eval()
        initial = fold_batch_norm(ctx.initial_model).to(ctx.device).eval()
        parameters = perturbable_parameters(model, options.perturb_biases)
        if not parameters:
            raise MeasureError("pacbayes-bound needs a network with linear or convolutional layers")
        if not all(torch.isfinite(p).all() for p in parameters.values()):
            return Estimate(math.nan, {"reason": "non-finite weights"})
        centres = perturbable_parameters(initial, options.perturb_biases)
        squared = sum(
            (p.double() - centres[k].double().to(p.device)).pow(2).sum().item() for k, p in parameters.items()
        )
        m, chance_level = ctx.num_train, 1.0 - 1.0 / ctx.num_classes
        delta_each = options.delta / 2 / options.grid_points
        terms = [self._terms(sigma, squared, m, delta_each) for sigma in self._grid(options)]
        hopeful = [t for t in terms if kl_inverse(0.0, t.budget) < chance_level]
        details: dict[str, float | int | str | None] = {"squared_distance_from_init": squared}
        if not hopeful:  # even a perfect ê_Q would leave the bound at or above chance: trivial bound 1
            best = min(terms, key=lambda t: t.budget)
            reason = "KL term too large for every grid σ"
            details.update(bound=1.0, sigma=best.sigma, kl=best.kl, certified=0, reason=reason)
            return Estimate(0.0, details)
        inputs, labels = ctx.train_inputs.to(ctx.device), ctx.train_labels.to(ctx.device)
        chosen, estimate = self._screen(model, parameters, inputs, labels, hopeful, ctx, options, chance_level)
        if estimate >= chance_level:  # not worth certifying: the estimate alone is at chance
            details.update(bound=None, certified=0, reason="no grid σ's estimated bound is below 1 − 1/K")
            return Estimate(0.0, details)
        errors = self._paired_errors(model, parameters, inputs, labels, chosen.sigma, ctx, options)
        mean_error = errors.mean().item()
        gibbs_upper = sampled_error_upper(mean_error, errors.numel(), delta_each)
        bound = kl_inverse(gibbs_upper, chosen.budget)
        details.update(
            bound=bound,
            sigma=chosen.sigma,
            kl=chosen.kl,
            gibbs_error=mean_error,
            gibbs_error_upper=gibbs_upper,
            samples=errors.numel(),
            certified=1,
        )
        return Estimate(rescaled_capability(bound, ctx.num_classes), details)

    @staticmethod
    def _grid(options: PacBayesBoundOptions) -> list[float]:
        if options.grid_points == 1:
            return [options.sigma_max]
        ratio = (options.sigma_max / options.sigma_min) ** (1 / (options.grid_points - 1))
        return [options.sigma_min * ratio**j for j in range(options.grid_points)]

    @staticmethod
    def _terms(sigma: float, squared: float, m: int, delta: float) -> BoundTerms:
        kl = squared / (2 * sigma**2)
        return BoundTerms(sigma, kl, kl_budget(kl, m, delta))

    @staticmethod
    def _screen(model, parameters, inputs, labels, hopeful, ctx, options, ceiling: float) -> tuple[BoundTerms, float]:
        """The grid σ whose bound, with ê_Q estimated from a few shared draws, is smallest, and
        that estimated bound (not a certified one; ∞ when none estimates below ``ceiling``).
        A grid σ stops being evaluated as soon as the errors already seen make its estimate
        at least the best so far (or ``ceiling``)."""
        generator = torch.Generator().manual_seed(derive_seed(ctx.spec.seed, f"pacbayes-bound-screen:{options.seed}"))
        noise = standard_normal_like(parameters, options.screening_draws, generator)
        draws, n = options.screening_draws, len(inputs)
        best, best_bound = hopeful[-1], math.inf
        for terms in hopeful:

            def draw_parameters(start: int, stop: int, sigma=terms.sigma) -> dict[str, torch.Tensor]:
                return {k: p + sigma * noise[k][start:stop] for k, p in parameters.items()}

            def cannot_win(correct: torch.Tensor, done: int, budget=terms.budget) -> bool:
                fewest_errors = (draws * done - correct.sum().item()) / (draws * n)
                return kl_inverse(fewest_errors, budget) >= min(best_bound, ceiling)

            metrics = perturbed_metrics(model, inputs, labels, draws, draw_parameters, stop_early=cannot_win)
            if int(metrics.examples[0]) < n:
                continue
            estimate = kl_inverse(1.0 - metrics.accuracy.mean().item(), terms.budget)
            if estimate < best_bound:
                best, best_bound = terms, estimate
        return best, best_bound

    @staticmethod
    def _paired_errors(model, parameters, inputs, labels, sigma, ctx, options) -> torch.Tensor:
        """0/1 errors of a fresh network θ + σz per training example and pass: [passes·m]."""
        n = len(inputs)
        errors = []
        for pass_index in range(options.passes):
            base_seed = derive_seed(ctx.spec.seed, f"pacbayes-bound-draws:{options.seed}:{pass_index}")

            def draw_parameters(start: int, stop: int) -> dict[str, torch.Tensor]:
                generator = torch.Generator().manual_seed(base_seed + start)
                noise = standard_normal_like(parameters, stop - start, generator)
                return {k: p + sigma * noise[k] for k, p in parameters.items()}

            metrics = perturbed_metrics(model, inputs, labels, n, draw_parameters, paired=True)
            errors.append(1.0 - metrics.accuracy)
        return torch.cat(errors)


MEASURES = (
    PacBayesFlatness,
    PacBayesInit,
    PacBayesOrig,
    PacBayesMagFlatness,
    PacBayesMagInit,
    PacBayesMagOrig,
    PacBayesBound,
)
