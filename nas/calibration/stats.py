"""The statistics of a proxy calibration study: rank agreement with a longer training, and seed noise.

Pure functions of plain numbers (no database, no TensorFlow), so they are tested on hand-made tables.

- Rank agreement (Vertex AI NAS's proxy-task tools compute the same): Kendall's tau and Spearman's rho between the
  candidates' AP at a rung of the proxy run and their AP at the reference fidelity, each with the p-value of the
  test of no association (`scipy.stats`) and a bootstrap interval (candidates resampled with replacement, the
  percentile interval of the statistic). With 10 candidates a 90% interval is wide (about +-0.25 around tau):
  the interval, not the estimate, says how far a proxy can be trusted.
- Seed noise (Vertex AI NAS's variance tool): per candidate the mean, standard deviation and coefficient of
  variation (std / mean) of the AP over repeat trainings with different seeds; the CV only where the mean AP is at
  least `CV_MIN_MEAN` (below it the ratio is dominated by the near-zero mean, and the std alone is reported);
  the pooled seed std over candidates; and the spread of the candidates' APs over that std.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

#: The coefficient of variation is reported only for candidates whose mean AP is at least this.
CV_MIN_MEAN = 0.05
#: Vertex AI NAS's bar for a proxy's repeat-training variance.
CV_TARGET = 0.4


@dataclasses.dataclass(frozen=True)
class RankAgreement:
    """Kendall tau and Spearman rho of one set of pairs, with bootstrap intervals and p-values.

    Attributes:
      n: pairs (candidates) used.
      tau, tau_p, tau_low, tau_high: Kendall's tau-b, its p-value, the bootstrap interval.
      rho, rho_p, rho_low, rho_high: Spearman's rho, its p-value, the bootstrap interval.
      level: the intervals' coverage (0.9).
    """

    n: int
    tau: float | None
    tau_p: float | None
    tau_low: float | None
    tau_high: float | None
    rho: float | None
    rho_p: float | None
    rho_low: float | None
    rho_high: float | None
    level: float

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain JSON."""
        return dataclasses.asdict(self)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def rank_agreement(proxy: Sequence[float], reference: Sequence[float], *, level: float = 0.9,
                   samples: int = 2000, seed: int = 0) -> RankAgreement:
    """Kendall's tau-b and Spearman's rho of `proxy` against `reference` (paired by position).

    Args:
      proxy, reference: the candidates' APs at the two fidelities (same length; pairs with a missing value
        must be left out by the caller).
      level: the coverage of the bootstrap intervals.
      samples: bootstrap resamples.
      seed: the bootstrap's seed.

    Returns:
      The statistics; None where they are undefined (fewer than 3 pairs, or one side constant).

    Raises:
      ValueError: for sequences of different lengths, or a level outside (0, 1).
    """
    from scipy import stats

    if len(proxy) != len(reference):
        raise ValueError(f"rank_agreement: {len(proxy)} proxy values but {len(reference)} reference values")
    if not 0 < level < 1:
        raise ValueError(f"rank_agreement: level must be in (0, 1), got {level}")
    x = np.asarray(proxy, dtype=float)
    y = np.asarray(reference, dtype=float)
    n = len(x)
    none = RankAgreement(n, None, None, None, None, None, None, None, None, level)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return none
    tau = stats.kendalltau(x, y)
    rho = stats.spearmanr(x, y)
    idx = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    taus = _tau_b(x[idx], y[idx])
    rhos = _spearman(x[idx], y[idx])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100

    def interval(values: np.ndarray) -> tuple[float | None, float | None]:
        values = values[np.isfinite(values)]  # a resample with one distinct value on a side has no ranking
        if not len(values):
            return None, None
        return float(np.percentile(values, lo)), float(np.percentile(values, hi))

    tau_low, tau_high = interval(taus)
    rho_low, rho_high = interval(rhos)
    return RankAgreement(n, _finite(tau.statistic), _finite(tau.pvalue), tau_low, tau_high,
                         _finite(rho.statistic), _finite(rho.pvalue), rho_low, rho_high, level)


def _tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of (samples, n) arrays, as `scipy.stats.kendalltau` computes it (NaN where a
    row is constant): sum of sign(dx) sign(dy) over pairs, over sqrt(pairs untied in x * pairs untied in y)."""
    dx = np.sign(x[:, :, None] - x[:, None, :])
    dy = np.sign(y[:, :, None] - y[:, None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dx * dy).sum(axis=(1, 2)) / np.sqrt((dx * dx).sum(axis=(1, 2)) * (dy * dy).sum(axis=(1, 2)))


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair: the Pearson correlation of their average ranks (NaN where constant)."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=1) - (x.shape[1] + 1) / 2
    ry = rankdata(y, axis=1) - (y.shape[1] + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=1) / np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))


@dataclasses.dataclass(frozen=True)
class SeedNoise:
    """One candidate's APs over repeat trainings with different seeds.

    Attributes:
      aps: the APs, one per seed.
      mean, std: their mean and sample standard deviation (ddof 1).
      cv: std / mean, or None when the mean is below `CV_MIN_MEAN` (or fewer than 2 values).
    """

    aps: tuple[float, ...]
    mean: float
    std: float | None
    cv: float | None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {"aps": list(self.aps), "mean": self.mean, "std": self.std, "cv": self.cv}


def seed_noise(aps: Sequence[float]) -> SeedNoise:
    """Mean, std and CV of one candidate's repeat APs.

    Raises:
      ValueError: for an empty sequence.
    """
    if not len(aps):
        raise ValueError("seed_noise: no APs")
    a = np.asarray(aps, dtype=float)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if len(a) > 1 else None
    cv = std / mean if std is not None and mean >= CV_MIN_MEAN else None
    return SeedNoise(tuple(float(v) for v in a), mean, std, cv)


def pooled_std(noises: Sequence[SeedNoise]) -> float | None:
    """The seed std pooled over candidates: sqrt of the degrees-of-freedom weighted mean of their variances."""
    num = sum((len(s.aps) - 1) * s.std**2 for s in noises if s.std is not None)
    dof = sum(len(s.aps) - 1 for s in noises if s.std is not None)
    return math.sqrt(num / dof) if dof else None


def earliest_rung(agreements: Sequence[tuple[int, RankAgreement]], target: float) -> int | None:
    """The first rung (in step order) whose tau reaches `target`, or None."""
    for step, a in sorted(agreements, key=lambda t: t[0]):
        if a.tau is not None and a.tau >= target:
            return step
    return None


__all__ = ["CV_MIN_MEAN", "CV_TARGET", "RankAgreement", "SeedNoise", "earliest_rung", "pooled_std",
           "rank_agreement", "seed_noise"]
