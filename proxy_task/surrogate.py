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

The reported ``params`` and ``flops`` are structural estimates of the SpineNet backbone at the proxy task's scale
(Model Garden's block and resampling layout, with the filter sizes scaled by ``filter_size_scale``): they let
FLOPs-constrained rewards be exercised, but they do not enter the AP, and they are not Model Garden's counts.

Example::

  ev = SurrogateEvaluator(target_seed=0, noise=0.02)
  result = ev.evaluate(SearchSpace('spinenet49').decode(decisions))
  result.metrics['ap'], result.flops, ev.optimum_value
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from proxy_task.result import ProxyResult
from search_space import LEVELS, OUTPUT_LEVELS, ArchSpec, SearchSpace

# Model Garden's FILTER_SIZE_MAP (official/vision/modeling/backbones/spinenet.py): base filters per level.
FILTER_SIZE_MAP: dict[int, int] = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}

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


def _structural_cost(
    arch: ArchSpec, *, image_size: int, filter_size_scale: float, resample_alpha: float, endpoints_num_filters: int
) -> tuple[int, int]:
    """(params, multiply-adds) of the backbone's convolutions, following Model Garden's SpineNet layout.

    Counts conv weights only (no batch norm, no biases, no detection head): the stem's ResNet bottleneck blocks
    (after a 7x7 stride-2 conv and a max pool), every live block with its projection shortcut, every resampling
    path (1x1 to alpha * C, a stride-2 3x3 per downsampling, 1x1 to the block's input width), and the 1x1 conv of
    every endpoint.
    """
    net = arch.network()

    def filters(level: int) -> int:
        return max(1, int(FILTER_SIZE_MAP[level] * filter_size_scale))

    def width(level: int, block_fn: str) -> int:  # channels a block outputs
        return filters(level) * (4 if block_fn == "bottleneck" else 1)

    def pixels(level: int) -> int:
        return max(1, image_size // 2**level) ** 2

    params = 0
    flops = 0

    def conv(cin: int, cout: int, k: int, level: int) -> None:
        nonlocal params, flops
        p = cin * cout * k * k
        params += p
        flops += p * pixels(level)

    conv(3, filters(2), 7, 1)  # stem conv, stride 2; max pool to level 2
    cin = filters(2)
    for level, count in zip((2, 3, 4, 5), arch.stem):
        for _ in range(count):
            c = filters(level)
            conv(cin, c, 1, level)
            conv(c, c, 3, level)
            conv(c, 4 * c, 1, level)
            if cin != 4 * c:
                conv(cin, 4 * c, 1, level)
            cin = 4 * c
    nodes = [(lv, "bottleneck") for lv in arch.stem_levels]
    for level, block_fn, parents, _merged, is_endpoint in net.blocks:
        target = width(level, block_fn)
        for j in parents:
            p_level, p_fn = nodes[j]
            mid = max(1, int(filters(p_level) * resample_alpha))
            conv(width(p_level, p_fn), mid, 1, p_level)
            if p_level < level:
                conv(mid, mid, 3, p_level + 1)  # then max pools, which have no weights
            conv(mid, target, 1, level)
        c = filters(level)
        if block_fn == "bottleneck":
            conv(4 * c, c, 1, level)
            conv(c, c, 3, level)
            conv(c, 4 * c, 1, level)
        else:
            conv(c, c, 3, level)
            conv(c, c, 3, level)
        conv(target, target, 1, level)  # projection shortcut
        if is_endpoint:
            conv(target, endpoints_num_filters, 1, level)
        nodes.append((level, block_fn))
    return params, flops


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
      image_size, filter_size_scale, resample_alpha, endpoints_num_filters: the scale at which `params` and
        `flops` are counted; the defaults are the paper's proxy task (SpineNet-49 with features x0.25,
        alpha 0.25, endpoints 64, 512-px images).

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
        need(is_int(image_size) and image_size >= 2 ** LEVELS[-1], "image_size", f"an integer >= {2 ** LEVELS[-1]}",
             image_size)
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
          A `ProxyResult` with ``metrics = {'ap', 'ap_noiseless', 'distance'}``, structural ``params`` and
          ``flops``, and ``error`` set (and no 'ap') for a simulated failure.

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

        Both are always drawn, so `failure_rate` does not shift the noise.
        """
        c = self._config
        seed = c["seed"] if seed is None else seed
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"SurrogateEvaluator.evaluate seed: expected an integer >= 0 or None, got {seed!r}")
        rng = np.random.default_rng([int(arch.key, 16), c["target_seed"], int(seed)])
        return float(rng.random()), float(rng.standard_normal())

    def _cost(self, arch: ArchSpec) -> tuple[int, int]:
        """(params, flops) of `arch` at the configured scale."""
        c = self._config
        return _structural_cost(
            arch,
            image_size=c["image_size"],
            filter_size_scale=c["filter_size_scale"],
            resample_alpha=c["resample_alpha"],
            endpoints_num_filters=c["endpoints_num_filters"],
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SurrogateEvaluator:
        """Strict inverse of `to_dict`: an unknown key raises `KeyError` naming it."""
        import inspect

        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"unknown SurrogateEvaluator option(s) {unknown}; expected some of {sorted(known)}")
        return cls(**d)
