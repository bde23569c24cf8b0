"""A TF-free surrogate scorer: an instant, deterministic AP for any `ArchSpec`, with a hidden optimum.

The surrogate stands in for the proxy training wherever a trial must cost nothing: the controller benchmark
(`scripts/bench/controllers.py`) and the search job's tests. It is not a model of COCO AP. It is a landscape with
real structure and a known maximum, so that a controller's sample efficiency can be measured honestly:

1. A hidden *target* architecture is drawn uniformly from the decision sequences of a search space with
   ``target_seed``.
2. Every architecture is described by structural features of the network it builds (`ArchSpec.network`, so dead
   blocks and parent order do not count): how many live blocks of each level and block type it has, which levels
   feed which (a 6x6 table of parent-level -> block-level edges), the build order of the output levels, the depth
   of every endpoint, and where in the build order each level's blocks sit.
3. The distance to the target is a Mahalanobis distance over those features, ``d^2 = D^T M D / dim`` with
   ``D = (features - target_features) / scale`` and ``M = I + B B^T / rank`` for a random ``B`` drawn from
   ``target_seed``: the off-diagonal terms of ``M`` are pairwise interactions between features.
4. ``ap = floor + (peak - floor) * exp(-d / length_scale)``, plus optional Gaussian noise.

Decisions interact through all four steps: an edge feature depends on the levels of two blocks (set by the scale
permutation and the level shifts) and on the connection decision; depths depend on whole chains of connections;
and the exponential does not add up per-feature terms. A controller that models decisions independently is
therefore not favoured by construction, nor is one that models them jointly: the surrogate knows nothing of any
controller.

**The optimum is known.** ``M`` is positive definite, so ``d >= 0`` with equality exactly when the features equal
the target's; the target architecture attains it. Hence the noiseless maximum over the whole space is ``peak``,
attained by `SurrogateEvaluator.optimum_arch` (and by any architecture with the same features). This holds for
every family and window, however large the space; no enumeration is needed.

The reported ``params`` and ``flops`` are those of the RetinaNet the architecture builds, counted from the spec by
`search_space.cost` (Model Garden's layer rules, exact against its built models): a search's trial
(`SurrogateTrialEvaluator`) reports what a real trial of the same proxy config stores (`ProxyConfig.cost`), and the
standalone landscape counts the paper's proxy detector at its own scale. They let FLOPs-constrained rewards be
exercised with real numbers; they do not enter the AP.

**A trial's learning curve** (`SurrogateTrialEvaluator`, the search's ``surrogate`` evaluator) walks the proxy's
schedule and reports an AP that grows with the training steps ``t``, at a rate of each architecture's own::

  x        = t / full_steps
  h(x, r)  = (1 - exp(-r x)) / (1 - exp(-r))           h(0) = 0, h(1) = 1, h(inf) = 1 / (1 - exp(-r))
  r(arch)  = R0 * exp(rate_spread * z_r)               z_r ~ N(0, 1) from (arch key, target_seed); R0 = 4.75
  ap(t)    = clip(h(x, r) * (L(arch) + noise * z), 0, 1)

``L`` is the landscape's noiseless AP above (`SurrogateEvaluator.ap`) and ``z`` the landscape's own noise draw
(a function of arch key, target_seed and the trial's seed): at ``t = full_steps`` a trial scores exactly what
`SurrogateEvaluator.evaluate` gives for the same seed. ``R0`` puts a typical architecture (``z_r = 0``) at 70% of
its final AP after a quarter of ``full_steps`` and at 91% after half; four times ``full_steps`` gains it under 1%.
At ``rate_spread = 0.5`` a slow learner (``z_r = -2``: ``r = 1.75``) is at 43% after a quarter and gains 21% at
four times ``full_steps``; a fast one (``z_r = 2``: ``r = 12.9``) is at 96% after a quarter. ``z_r`` is
independent of ``L``, so an early rung ranks architectures partly by how fast they learn, not only by how good they
end up; with ``rate_spread = 0`` every curve has the same shape and every step ranks the architectures alike.

The noise is scaled by ``h`` (the seed noise is a constant fraction of the curve): an untrained network scores 0
whatever its seed, every run's curve is non-decreasing, and the signal-to-noise ratio of a ranking does not change
along the curve; only the rate spread makes an early ranking differ from a late one (with ``rate_spread = 0`` one
seed ranks alike at every step, noise or not). `SurrogateTrialEvaluator.expected_ap` gives the noiseless
``clip(L * h, 0, 1)`` at any step. The noiseless optimum ``peak`` holds at ``full_steps``; at other steps a faster
learner may beat the target.

The training loss is deterministic, decreasing, and better (lower) for a better and faster-learning network::

  loss(t) = INITIAL_LOSS * exp(-LOSS_DROP * L * (1 - exp(-r x)))     INITIAL_LOSS = 2.0, LOSS_DROP = 2.0

Example::

  ev = SurrogateEvaluator(target_seed=0, noise=0.02)
  result = ev.evaluate(SearchSpace('spinenet49').decode(decisions))
  result.metrics['ap'], result.flops, ev.optimum_value
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from proxy_task.data import num_classes_of
from proxy_task.evaluator import Evaluator, Reporter, TrialContext, data_identity, no_report
from proxy_task.result import ProxyResult
from search_space import LEVELS, OUTPUT_LEVELS, ArchSpec, SearchSpace
from search_space.cost import Scaling, count_cost

if TYPE_CHECKING:
    from proxy_task.config import ProxyConfig, SurrogateConfig

logger = logging.getLogger(__name__)

# The standalone landscape counts the paper's proxy detector (section 5.1: COCO, so Model Garden's 91 classes; a
# head of 4 convs as wide as the endpoints, one block per group), as the paper preset's proxy builds it.
LANDSCAPE_NUM_CLASSES = 91
LANDSCAPE_HEAD_NUM_CONVS = 4

# Feature groups, in vector order: (name, size, scale). A feature is divided by its scale before the distance, so
# that each group moves the distance by a comparable amount per unit change of the architecture.
_GROUPS: tuple[tuple[str, int, float], ...] = (
    ("counts", len(LEVELS) * 2, 1.0),  # live intermediate blocks per (level, block_fn)
    ("edges", len(LEVELS) * len(LEVELS), 1.0),  # parent level -> block level, over all live inputs
    ("output_order", len(OUTPUT_LEVELS), 1.0),  # rank of each output level among the outputs in build order
    ("depth", len(OUTPUT_LEVELS), 1.5),  # longest block path from the stem to each endpoint
    ("position", len(LEVELS), 0.5),  # sum over a level's intermediate blocks of (position / live blocks)
)
_DIM = sum(size for _, size, _ in _GROUPS)
_SCALE = np.concatenate([np.full(size, scale) for _, size, scale in _GROUPS])


def structural_features(arch: ArchSpec) -> np.ndarray:
    """The feature vector the surrogate compares (unscaled), from the network `arch` builds.

    Args:
      arch: any architecture (any stem, any number of blocks).

    Returns:
      float64 vector of length 64: see the module docstring and `_GROUPS` for the layout.
    """
    net = arch.network()
    stem_levels = arch.stem_levels
    m = len(stem_levels)
    levels = list(stem_levels) + [b[0] for b in net.blocks]
    lvl = {level: i for i, level in enumerate(LEVELS)}
    counts = np.zeros((len(LEVELS), 2))
    edges = np.zeros((len(LEVELS), len(LEVELS)))
    order = np.zeros(len(OUTPUT_LEVELS))
    depth_of = [0] * m
    endpoint_depth = np.zeros(len(OUTPUT_LEVELS))
    position = np.zeros(len(LEVELS))
    n_live = max(len(net.blocks), 1)
    rank = 0
    for k, (level, block_fn, parents, merged, is_endpoint) in enumerate(net.blocks):
        inputs = tuple(parents) + tuple(merged)
        for j in inputs:
            edges[lvl[levels[j]], lvl[level]] += 1.0
        depth_of.append(1 + max(depth_of[j] for j in inputs))
        if is_endpoint:
            i = OUTPUT_LEVELS.index(level)
            order[i] = rank
            rank += 1
            endpoint_depth[i] = depth_of[-1]
        else:
            counts[lvl[level], 0 if block_fn == "bottleneck" else 1] += 1.0
            position[lvl[level]] += (k + 1) / n_live
    return np.concatenate([counts.ravel(), edges.ravel(), order, endpoint_depth, position])


def _check_arch(arch: Any, where: str) -> None:
    if not isinstance(arch, ArchSpec):
        raise TypeError(f"{where}: expected an ArchSpec, got {type(arch).__name__}")


class SurrogateEvaluator:
    """Scores architectures with a smooth, structured, deterministic landscape around a hidden target.

    All arguments are JSON scalars, so the evaluator can be configured from a preset:
    ``SurrogateEvaluator(**json.loads(text))``; `to_dict` gives them back.

    Args:
      target_seed: draws the hidden optimum (a uniformly random decision sequence of the space) and the
        interaction matrix.
      noise: standard deviation of the Gaussian noise added to the AP (0 for none). The AP is clipped to [0, 1].
      seed: default noise seed for `evaluate`. The noise is a function of (arch key, target_seed, seed), so
        evaluating the same architecture twice with the same seed gives the same value.
      family: the search space the target is drawn from ('spinenet49', 'r0-sp53', ...).
      window: the space's parent window (see `SearchSpace`).
      peak: the AP of the optimum.
      floor: the AP far from the optimum.
      length_scale: how fast the AP falls with the distance (in units of the normalized distance).
      interaction_rank: rank of the random interaction term of the distance metric (0: no interactions
        between features; the decisions still interact through the features themselves).
      failure_rate: probability (a deterministic function of arch key, target_seed and seed) that a trial
        fails with an error instead of an AP, for exercising failure handling. 0 by default.
      image_size, filter_size_scale, resample_alpha, endpoints_num_filters: the detector whose `params` and
        `flops` are reported (`search_space.cost`, with a head of `LANDSCAPE_HEAD_NUM_CONVS` convs of
        `endpoints_num_filters`, `LANDSCAPE_NUM_CLASSES` classes and fused batch norms); the defaults are the
        paper's proxy task (features x0.25, alpha 0.25, endpoints and head 64, 512-px images: the paper
        preset's proxy). `image_size` must be a multiple of 128.

    Raises:
      ValueError: for an out-of-range argument (what, expected, got).
      LookupError: for an unknown family.
    """

    def __init__(
        self,
        target_seed: int = 0,
        noise: float = 0.0,
        *,
        seed: int = 0,
        family: str = "spinenet49",
        window: int | None = 5,
        peak: float = 0.40,
        floor: float = 0.05,
        length_scale: float = 1.5,
        interaction_rank: int = 8,
        failure_rate: float = 0.0,
        image_size: int = 512,
        filter_size_scale: float = 0.25,
        resample_alpha: float = 0.25,
        endpoints_num_filters: int = 64,
    ) -> None:
        def need(ok: bool, what: str, expected: str, got: Any) -> None:
            if not ok:
                raise ValueError(f"SurrogateEvaluator {what}: expected {expected}, got {got!r}")

        def is_int(x: Any) -> bool:
            return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

        def is_num(x: Any) -> bool:
            return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

        need(is_int(target_seed) and target_seed >= 0, "target_seed", "an integer >= 0", target_seed)
        need(is_int(seed) and seed >= 0, "seed", "an integer >= 0", seed)
        need(is_num(noise) and math.isfinite(noise) and noise >= 0, "noise", "a finite number >= 0", noise)
        need(is_num(peak) and 0 < peak <= 1, "peak", "a number in (0, 1]", peak)
        need(is_num(floor) and 0 <= floor < peak, "floor", f"a number in [0, peak={peak})", floor)
        need(is_num(length_scale) and length_scale > 0, "length_scale", "a number > 0", length_scale)
        need(is_int(interaction_rank) and interaction_rank >= 0, "interaction_rank", "an integer >= 0",
             interaction_rank)
        need(is_num(failure_rate) and 0 <= failure_rate < 1, "failure_rate", "a number in [0, 1)", failure_rate)
        # As the proxy's: every level L3..L7 then has a width of its own (`search_space.cost.count_cost`).
        need(is_int(image_size) and image_size >= 2 ** LEVELS[-1] and image_size % 2 ** LEVELS[-1] == 0,
             "image_size", f"a positive multiple of {2 ** LEVELS[-1]}", image_size)
        need(is_num(filter_size_scale) and filter_size_scale > 0, "filter_size_scale", "a number > 0",
             filter_size_scale)
        need(is_num(resample_alpha) and resample_alpha > 0, "resample_alpha", "a number > 0", resample_alpha)
        need(is_int(endpoints_num_filters) and endpoints_num_filters > 0, "endpoints_num_filters",
             "an integer > 0", endpoints_num_filters)
        self._config: dict[str, Any] = {
            "target_seed": int(target_seed),
            "noise": float(noise),
            "seed": int(seed),
            "family": family,
            "window": window,
            "peak": float(peak),
            "floor": float(floor),
            "length_scale": float(length_scale),
            "interaction_rank": int(interaction_rank),
            "failure_rate": float(failure_rate),
            "image_size": int(image_size),
            "filter_size_scale": float(filter_size_scale),
            "resample_alpha": float(resample_alpha),
            "endpoints_num_filters": int(endpoints_num_filters),
        }
        self.space = SearchSpace(family, window=window)
        rng = np.random.default_rng([int(target_seed), 0x5EED])
        self._target_decisions = self.space.random(rng)
        self._target = self.space.decode(self._target_decisions)
        self._target_features = structural_features(self._target) / _SCALE
        b = rng.standard_normal((_DIM, interaction_rank)) if interaction_rank else np.zeros((_DIM, 0))
        # Positive definite: the identity plus a PSD low-rank term whose off-diagonal entries couple features.
        self._metric = np.eye(_DIM) + (b @ b.T) / max(interaction_rank, 1)

    # ------------------------------------------------------------------------------------------------ config
    def to_dict(self) -> dict[str, Any]:
        """The constructor arguments, JSON-safe: ``SurrogateEvaluator(**ev.to_dict())`` is the same evaluator."""
        return dict(self._config)

    def __repr__(self) -> str:
        c = self._config
        return f"SurrogateEvaluator(target_seed={c['target_seed']}, noise={c['noise']}, family={c['family']!r})"

    # ------------------------------------------------------------------------------------------------ optimum
    @property
    def optimum_value(self) -> float:
        """The noiseless AP of the best architecture of the space: ``peak`` (see the module docstring)."""
        return self._config["peak"]

    @property
    def optimum_arch(self) -> ArchSpec:
        """An architecture that attains `optimum_value` (the hidden target)."""
        return self._target

    @property
    def optimum_decisions(self) -> tuple[int, ...]:
        """The decision sequence (in ``self.space``) the target was drawn as."""
        return self._target_decisions

    # ------------------------------------------------------------------------------------------------ scoring
    def distance(self, arch: ArchSpec) -> float:
        """The normalized distance of `arch`'s features from the target's (0 exactly at the optimum)."""
        delta = structural_features(arch) / _SCALE - self._target_features
        d2 = float(delta @ self._metric @ delta) / _DIM
        return math.sqrt(max(d2, 0.0))

    def ap(self, arch: ArchSpec) -> float:
        """The noiseless AP of `arch`."""
        c = self._config
        return c["floor"] + (c["peak"] - c["floor"]) * math.exp(-self.distance(arch) / c["length_scale"])

    def evaluate(self, arch: ArchSpec, seed: int | None = None) -> ProxyResult:
        """Scores one architecture, as a proxy trial would.

        Args:
          arch: the architecture.
          seed: noise seed (the constructor's `seed` when None). The result is a deterministic function of
            (arch.key, target_seed, seed).

        Returns:
          A `ProxyResult` with ``metrics = {'ap', 'ap_noiseless', 'distance'}``, the ``params`` and ``flops`` of
          its detector (see the constructor), and ``error`` set (and no 'ap') for a simulated failure.

        Raises:
          TypeError: when `arch` is not an `ArchSpec`.
        """
        start = time.perf_counter()
        _check_arch(arch, "SurrogateEvaluator.evaluate")
        c = self._config
        u_fail, z = self._draws(arch, seed)
        params, flops = self._cost(arch)
        distance = self.distance(arch)
        clean = c["floor"] + (c["peak"] - c["floor"]) * math.exp(-distance / c["length_scale"])
        if u_fail < c["failure_rate"]:
            return ProxyResult(
                metrics={"distance": distance},
                flops=flops,
                params=params,
                wall_s=time.perf_counter() - start,
                error="surrogate: simulated failure",
            )
        ap = min(1.0, max(0.0, clean + c["noise"] * z))
        return ProxyResult(
            metrics={"ap": ap, "ap_noiseless": clean, "distance": distance},
            flops=flops,
            params=params,
            wall_s=time.perf_counter() - start,
        )

    def _draws(self, arch: ArchSpec, seed: int | None) -> tuple[float, float]:
        """(u_fail, z) of one trial: a uniform that decides a simulated failure and the AP noise's standard normal.

        Both are always drawn, so `failure_rate` does not shift the noise. Shared with `SurrogateTrialEvaluator`,
        whose run with the same seed therefore fails, and is noisy, exactly as `evaluate` is.
        """
        c = self._config
        seed = c["seed"] if seed is None else seed
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"SurrogateEvaluator.evaluate seed: expected an integer >= 0 or None, got {seed!r}")
        rng = np.random.default_rng([int(arch.key, 16), c["target_seed"], int(seed)])
        return float(rng.random()), float(rng.standard_normal())

    def _cost(self, arch: ArchSpec) -> tuple[int, int]:
        """(params, flops) of the detector of `arch` at the configured scale (see the constructor)."""
        c = self._config
        scaling = Scaling(filter_size_scale=c["filter_size_scale"], resample_alpha=c["resample_alpha"],
                          endpoints_num_filters=c["endpoints_num_filters"], head_num_convs=LANDSCAPE_HEAD_NUM_CONVS,
                          head_num_filters=c["endpoints_num_filters"])
        cost = count_cost(arch, image_size=c["image_size"], num_classes=LANDSCAPE_NUM_CLASSES, scaling=scaling)
        return cost.params, cost.flops

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SurrogateEvaluator:
        """Strict inverse of `to_dict`: an unknown key raises `KeyError` naming it."""
        import inspect

        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"unknown SurrogateEvaluator option(s) {unknown}; expected some of {sorted(known)}")
        return cls(**d)


# The learning curve's constants (see the module docstring).
R0 = 4.75  # h(0.25, R0) = 0.70: a typical architecture has 70% of its final AP after a quarter of full_steps
INITIAL_LOSS = 2.0  # every network's training loss at step 0 (RetinaNet's focal + box loss starts near it)
LOSS_DROP = 2.0  # how far the loss falls per unit of AP: exp(-2 * 0.4) = 0.45 of the start for the optimum
NOMINAL_STEP_S = 0.01  # the step time behind images_per_s when a trial spends no simulated time
_RATE_TAG = 0x4A7E  # keeps the rate's random stream apart from the landscape's noise and target streams


def curve_shape(x: float, rate: float) -> float:
    """``h(x, r) = (1 - exp(-r x)) / (1 - exp(-r))``: the fraction of the final AP reached at ``x = t / full_steps``.

    Args:
      x: training steps as a fraction of ``full_steps`` (>= 0; above 1 for longer training).
      rate: the architecture's learning rate ``r`` (> 0; r -> 0 gives the straight line ``h = x``).
    """
    if rate < 1e-9:
        return x
    return math.expm1(-rate * x) / math.expm1(-rate)


def _learning_rate(proxy: ProxyConfig, step: int) -> float:
    # As Model Garden's LinearWarmup around CosineDecay (proxy_task/trainer.py): a linear ramp from 0 to the
    # schedule's value at warmup_steps, then the schedule itself, cosine over the whole run to 0 at train_steps.
    def schedule(s: int) -> float:
        if proxy.lr_schedule == "constant":
            return proxy.learning_rate
        return proxy.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(s, proxy.train_steps) / proxy.train_steps))

    if step < proxy.warmup_steps:
        return schedule(proxy.warmup_steps) * step / proxy.warmup_steps
    return schedule(step)


class SurrogateTrialEvaluator(Evaluator):
    """The ``surrogate`` evaluator: a trial of the proxy's schedule with a synthetic, architecture-shaped curve.

    Each trial walks ``proxy.train_steps`` steps, spending ``settings.duration_s`` seconds of simulated time (sleeping)
    in proportion to the steps, and reports as the proxy training would (every report carries the training
    metrics; the evaluations add the AP)::

      every proxy.log_every steps, at each of proxy.eval_at_steps and at train_steps:
          report(step, {'loss', 'learning_rate', 'images_per_s'})
      at each of proxy.eval_at_steps and at train_steps, in the same report, also:
          'ap', 'ap_noiseless'

    The curve, the loss and the failures are in the module docstring. ``params`` and ``flops`` are what a
    real trial of the same proxy config stores: ``proxy.cost(arch, num_classes_of(proxy.data))``. ``images_per_s`` is
    ``batch_size * train_steps / duration_s`` (the simulated pace, the same at every report), or
    ``batch_size / NOMINAL_STEP_S`` when ``duration_s`` is 0. ``learning_rate`` is the proxy's schedule: linear
    warmup from 0 over ``warmup_steps``, then cosine decay to 0 at ``train_steps`` (or constant).

    Args:
      settings: the ``evaluator.surrogate`` section.
      proxy: the proxy task's settings (its schedule: train_steps, log_every, eval_at_steps, batch_size,
        learning_rate, warmup_steps, lr_schedule; its detector and dataset, for ``params`` and ``flops``).
      context: the trial's context (family, window, and the search's seed when ``settings.target_seed`` is None).
      landscape: a prebuilt `SurrogateEvaluator` to use instead of the one the settings describe (tests: e.g. one
        with a ``failure_rate``).

    Example::

      ev = SurrogateTrialEvaluator(SurrogateConfig(noise=0.02), ProxyConfig(), TrialContext(search_seed=3))
      result = ev.evaluate(arch, seed=0, report=lambda step, metrics: step >= 200)  # stopped at step 200
      ev.expected_ap(arch, 200), ev.expected_ap(arch, ev.full_steps) == ev.landscape.ap(arch)
    """

    uses_tensorflow = False

    # Its AP depends only on these proxy settings (its curve follows the proxy's steps), on its settings but
    # `_NON_SCORE`, and on the search's space and (unless `target_seed` is set) seed.
    _SCORE_PROXY = ("train_steps",)
    _NON_SCORE = frozenset({"duration_s"})
    # Its params and FLOPs are those of the proxy's detector (`ProxyConfig.cost` with the dataset's classes), so
    # with a reward that reads them these proxy settings and the dataset change its reward too.
    _COST_PROXY = ("image_size", "filter_size_scale", "resample_alpha", "block_repeats", "endpoints_num_filters",
                   "head_num_filters", "head_num_convs", "activation")

    @classmethod
    def score_settings(
        cls,
        settings: Mapping[str, Any] | None,
        proxy: Mapping[str, Any],
        search: Mapping[str, Any],
        *,
        reward_uses_cost: bool,
    ) -> dict[str, Any]:
        """What changes a surrogate trial's score (`Evaluator.score_settings`): its settings but the simulated
        duration, with the target seed it draws (the search's when none is set), the search's space, the proxy's
        steps; with a reward that reads the cost also the proxy's detector and its dataset's classes."""
        if settings is None:
            import dataclasses

            from proxy_task.config import SurrogateConfig

            settings = dataclasses.asdict(SurrogateConfig())
        own = {k: v for k, v in settings.items() if k not in cls._NON_SCORE}
        if own.get("target_seed") is None:
            own["target_seed"] = search["seed"]
        out: dict[str, Any] = {"settings": own, "space": {"family": search["family"], "window": search["window"]},
                               "proxy": {k: proxy[k] for k in cls._SCORE_PROXY}}
        if reward_uses_cost:
            out["proxy"].update({k: proxy[k] for k in cls._COST_PROXY})
            # Only the classes count, which the synthetic generator fixes whatever its parameters.
            out["proxy"]["data"] = data_identity(proxy["data"], generator_settings=False)
        return out

    @classmethod
    def describe(cls, settings: Mapping[str, Any] | None, proxy: Mapping[str, Any], search: Mapping[str, Any]) -> str:
        """'(target seed 0, spinenet49) 800 steps' (`Evaluator.describe`)."""
        target = (settings or {}).get("target_seed")
        target = search.get("seed", 0) if target is None else target
        return f"(target seed {target}, {search.get('family', '?')}) {proxy.get('train_steps', '?')} steps"

    def __init__(
        self,
        settings: SurrogateConfig,
        proxy: ProxyConfig,
        context: TrialContext,
        *,
        landscape: SurrogateEvaluator | None = None,
    ) -> None:
        self.settings = settings
        self.proxy = proxy
        self.context = context
        if landscape is None:
            # As the search job builds it (nas.engine.driver.evaluator_spec).
            target_seed = settings.target_seed if settings.target_seed is not None else context.search_seed
            landscape = SurrogateEvaluator(target_seed=target_seed, noise=settings.noise, family=context.family,
                                           window=context.window)
        self.landscape = landscape
        self._target_seed = int(landscape.to_dict()["target_seed"])
        # The detector's classes, as a real trial's dataset gives them (no data is read or made).
        self.num_classes = num_classes_of(proxy.data)

    @property
    def full_steps(self) -> int:
        """The training steps at which the AP equals the landscape's value."""
        return self.settings.full_steps

    def rate(self, arch: ArchSpec) -> float:
        """``r(arch)``, the architecture's learning rate (``R0`` for every arch when ``rate_spread`` is 0)."""
        _check_arch(arch, "SurrogateTrialEvaluator.rate")
        z = np.random.default_rng([_RATE_TAG, int(arch.key, 16), self._target_seed]).standard_normal()
        return R0 * math.exp(self.settings.rate_spread * float(z))

    def expected_ap(self, arch: ArchSpec, steps: float) -> float:
        """The noiseless AP of `arch` after `steps` training steps: ``clip(L(arch) * h(steps / full_steps, r), 0, 1)``.

        Args:
          arch: the architecture.
          steps: training steps (>= 0; any number, not only the proxy's ``train_steps``).

        Raises:
          ValueError: for negative steps. TypeError: when `arch` is not an `ArchSpec`.
        """
        if not steps >= 0:
            raise ValueError(f"SurrogateTrialEvaluator.expected_ap steps: expected a number >= 0, got {steps!r}")
        return self._ap(self.landscape.ap(arch), self.rate(arch), steps, 0.0)

    def train_loss(self, arch: ArchSpec, steps: float) -> float:
        """The synthetic training loss of `arch` at `steps` (module docstring; no noise)."""
        return self._loss(self.landscape.ap(arch), self.rate(arch), steps)

    def learning_rate(self, step: int) -> float:
        """The proxy's learning rate at `step`."""
        return _learning_rate(self.proxy, step)

    def _ap(self, clean: float, rate: float, steps: float, noise_term: float) -> float:
        return min(1.0, max(0.0, curve_shape(steps / self.full_steps, rate) * (clean + noise_term)))

    def _loss(self, clean: float, rate: float, steps: float) -> float:
        return INITIAL_LOSS * math.exp(-LOSS_DROP * clean * -math.expm1(-rate * steps / self.full_steps))

    def _report_steps(self) -> list[int]:
        p = self.proxy
        steps = set(range(p.log_every, p.train_steps + 1, p.log_every)) | set(p.eval_at_steps) | {p.train_steps}
        return sorted(steps)

    def evaluate(self, arch: ArchSpec, *, seed: int, report: Reporter = no_report) -> ProxyResult:
        """Runs one trial of `arch` along the proxy's schedule.

        Args:
          arch: the architecture.
          seed: the trial's seed (the AP noise and the simulated failure, exactly as the landscape's `evaluate`).
          report: called at every report step; True stops the trial at once.

        Returns:
          A finished trial: ``metrics = {'ap', 'ap_noiseless', 'distance', 'steps', 'train_loss'}`` (the AP at
          ``train_steps``). A stopped one: ``stopped_at`` = the step of the report that stopped it, and the metrics
          so far (``'distance', 'steps', 'train_loss'``, plus ``'ap', 'ap_noiseless'`` of the latest evaluation if
          there was one). A simulated failure (the landscape's ``failure_rate``) ends the trial at its last step,
          before that step's report, with the landscape's failed result (``metrics = {'distance'}``, ``error``).

        Raises:
          TypeError: when `arch` is not an `ArchSpec`. ValueError: for a bad seed.
        """
        start = time.perf_counter()
        _check_arch(arch, "SurrogateTrialEvaluator.evaluate")
        u_fail, z = self.landscape._draws(arch, seed)
        cost = self.proxy.cost(arch, self.num_classes)
        params, flops = cost.params, cost.flops
        cfg = self.landscape.to_dict()
        distance = self.landscape.distance(arch)
        clean = self.landscape.ap(arch)
        rate = self.rate(arch)
        noise_term = cfg["noise"] * z
        fails = u_fail < cfg["failure_rate"]
        p, duration = self.proxy, self.settings.duration_s
        evals = set(p.eval_at_steps) | {p.train_steps}
        images_per_s = p.batch_size * (p.train_steps / duration if duration > 0 else 1.0 / NOMINAL_STEP_S)
        latest_ap: dict[str, float] = {}  # of the latest evaluation
        trained: dict[str, float] = {}  # steps and train_loss so far

        def result(error: str | None = None, stopped_at: int | None = None) -> ProxyResult:
            # A failure keeps the landscape's failed metrics (no AP), as `SurrogateEvaluator.evaluate` gives them.
            metrics = {"distance": distance} if error else {**latest_ap, "distance": distance, **trained}
            return ProxyResult(metrics=metrics, flops=flops, params=params, wall_s=time.perf_counter() - start,
                               error=error, stopped_at=stopped_at)

        for step in self._report_steps():
            if duration > 0:
                # Against a deadline, so the sleeps' overheads do not add up over many reports.
                delay = start + duration * step / p.train_steps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            if fails and step == p.train_steps:
                logger.info("[%s] simulated failure at step %d", self.context.label, step)
                return result(error="surrogate: simulated failure")
            loss = self._loss(clean, rate, step)
            trained.update(steps=float(step), train_loss=loss)
            reported = {"loss": loss, "learning_rate": _learning_rate(p, step), "images_per_s": images_per_s}
            if step in evals:
                ap = {"ap": self._ap(clean, rate, step, noise_term), "ap_noiseless": self._ap(clean, rate, step, 0.0)}
                latest_ap.update(ap)
                reported.update(ap)
            if report(step, reported):
                logger.info("[%s] stopped at step %d", self.context.label, step)
                return result(stopped_at=step)
        return result()  # metrics: ap, ap_noiseless (at train_steps), distance, steps, train_loss
