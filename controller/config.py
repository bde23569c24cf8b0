"""Controller configs: frozen dataclasses of stdlib types, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


# PPO's LSTM and embedding widths stop here (NASNet's LSTM has 100 units; one of 4096 holds about 68M weights).
MAX_WIDTH = 4096
# PPO's epochs per batch stop here (the PPO paper's runs use 3 to 15): each is an optimizer step in the driver.
MAX_EPOCHS = 1000
# PPO's samples per proposal stop here: every proposal draws this many sequences' uniforms (see PPOConfig).
MAX_DEDUP_ATTEMPTS = 1000
# PPO's priority queue stops here: every update takes all of it through the policy beside the batch.
MAX_ELITES = 1000


def _is_int(x: Any) -> bool:
    # Within 64 bits: a setting beyond them would overflow NumPy's and TensorFlow's integers.
    return isinstance(x, int) and not isinstance(x, bool) and -(2**63) <= x < 2**63


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _require(cls_name: str, field: str, ok: bool, expected: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"{cls_name}.{field}: expected {expected}, got {got!r}")


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """What every controller shares: how failed trials are treated.

    A trial fails when the search job reports ``reward=None`` (an error, a timeout) or a reward that is NaN or
    infinite (a diverged proxy training).

    Attributes:
      reward_for_failure: the reward a failed trial is given; None skips it (the controller learns nothing from
        it, as NNI's ``on_failure='ignore'``). A value such as 0.0 teaches the controller to avoid what fails.
      max_consecutive_failures: after this many failed trials in a row the controller's status becomes STOPPED
        and `propose` raises (NNI's invalid patience); None never stops.
    """

    reward_for_failure: float | None = None
    max_consecutive_failures: int | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        _require(
            name,
            "reward_for_failure",
            self.reward_for_failure is None or _is_num(self.reward_for_failure),
            "a finite number or None",
            self.reward_for_failure,
        )
        _require(
            name,
            "max_consecutive_failures",
            self.max_consecutive_failures is None
            or (_is_int(self.max_consecutive_failures) and self.max_consecutive_failures >= 1),
            "an integer >= 1 or None",
            self.max_consecutive_failures,
        )


@dataclasses.dataclass(frozen=True)
class RandomConfig(ControllerConfig):
    """Random search: every decision uniform and independent. It has no options of its own.

    Attributes:
      reward_for_failure: see `ControllerConfig`.
      max_consecutive_failures: see `ControllerConfig`.
    """


@dataclasses.dataclass(frozen=True)
class EvolutionConfig(ControllerConfig):
    """Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image Classifier Architecture
    Search" (AmoebaNet), section 2, run asynchronously.

    The first `population_size` proposals are uniformly random. After that, each proposal samples
    `tournament_size` members of the population without replacement, takes the one with the best reward as the
    parent and changes one of its decisions, picked uniformly, to a different value, picked uniformly. A trial
    joins the population when its reward arrives (so trials can be outstanding while others return), and the
    oldest member leaves when the population is over `population_size`. The paper uses P=100, S=25 for
    20,000 trials; PyGlove's ``regularized_evolution`` defaults to P=100, S=10. The defaults here are sized for
    searches of a few thousand trials (tuned on the surrogate, on target seeds other than the benchmark's).

    Attributes:
      population_size: P, the number of most recent trials kept (and of initial random proposals). >= 2.
      tournament_size: S, members compared to pick a parent; 2 <= S <= P.
      reward_for_failure: see `ControllerConfig`; a failed trial given a reward joins the population.
      max_consecutive_failures: see `ControllerConfig`.
    """

    population_size: int = 50
    tournament_size: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        _require(
            name,
            "population_size",
            _is_int(self.population_size) and self.population_size >= 2,
            "an integer >= 2",
            self.population_size,
        )
        _require(
            name,
            "tournament_size",
            _is_int(self.tournament_size) and 2 <= self.tournament_size <= self.population_size,
            f"an integer in [2, population_size={self.population_size}]",
            self.tournament_size,
        )


@dataclasses.dataclass(frozen=True)
class PPOConfig(ControllerConfig):
    """The RL controller: an autoregressive LSTM policy over the decisions, trained with PPO.

    The recipe is NASNet's (Zoph et al. 2018, appendix A: the controller RNN "was trained using Proximal Policy
    Optimization"), which NAS-FPN (Ghiasi et al. 2019) uses for its RNN controller and SpineNet (Du et al. 2020,
    section 5.1) takes over from NAS-FPN. NASNet's values, for reference: a one-layer LSTM with 100 hidden units,
    weights initialized uniformly in [-0.1, 0.1], learning rate 0.00035, entropy weight 0.00001, an
    exponential-moving-average reward baseline with weight 0.95. NAS-FPN and SpineNet publish no other values;
    their searches sampled 6,000 to 14,000 architectures (SpineNet, section 5.1).

    The defaults keep NASNet's policy (one LSTM layer of 100 units, uniform +-0.1 initialization) and baseline
    (EMA 0.95), with PPO's usual clip of 0.2. Everything else was tuned for budgets of about 2,000 architectures
    (Vertex AI's guidance for SpineNet searches), where NASNet's learning rate barely moves the policy, on the
    surrogate evaluator with target seeds 1 to 4, never the benchmark's target seed 0. The values tried and how
    each did are in ``scripts/bench/results/controllers_tuning.json`` (issue 4: learning rate, batch, epochs) and
    ``controllers_tuning_issue32.json`` (issue 32: exploration).

    **Exploration** (issue 32). With a fixed small entropy bonus the policy turns nearly deterministic within a few
    hundred proposals and then proposes the same few architectures (420 distinct in 2,000 before this). Three
    things keep it exploring, each from the RL-NAS literature and its tools:

    * an entropy *target* (``entropy_target``): the entropy weight is adapted after every update by dual ascent,
      as SAC tunes its temperature (Haarnoja et al. 2018), up while the policy's entropy is under the target
      fraction of the uniform policy's, down while over, so the entropy settles at the target instead of
      collapsing (``entropy_weight`` is then only the starting weight);
    * advantages centered and scaled per batch (``center_advantages``, ``normalize_advantages``), the usual PPO
      advantage normalization: every update pushes half the batch up and half down, whatever the baseline's lag;
    * deduped sampling (``dedup_attempts``): a proposal whose architecture the search already knows is resampled,
      up to a bounded number of attempts, before the repeat is accepted (PyGlove's ``pg.geno.Deduping``).

    A priority queue of the best architectures so far (``elite_size``; Abolafia et al. 2018, "Neural program
    synthesis with priority queue training") and an inverse-time decay of the learning rate
    (``learning_rate_halflife``) each added about 0.01 to the median best at 2,000 proposals in tuning, and
    together about 0.018 (8 runs, target seeds 1-4: median best 0.260 without either, 0.278 with both; evolution
    0.287 on the same runs). The tuning started from the NASNet / NAS-FPN regime and moved away from it where the
    budget is 20 times smaller: a larger learning rate (0.02; inverse-time decay to 0.01 after 100 updates) on small
    batches (5 rewards an update), and an entropy target of 0.3 (0.5 explores more and finds less; 0.1 and 0.05
    fall under 80% distinct proposals).

    The learning rate still sets the search's horizon: the defaults suit a budget of about 2,000 trials; for a
    longer search, lower the learning rate in proportion (the ``paper`` preset does: 14,000 trials), or raise
    ``learning_rate_halflife`` with the budget. Neither was measured beyond 2,000 proposals.

      hidden_size: LSTM units (NASNet: 100).
      embedding_size: width of the embedding of the previous decision fed to the LSTM.
      init_scale: weights start uniform in [-init_scale, init_scale] (NASNet: 0.1), at most 1; biases start at 0.
      learning_rate: Adam step size (NASNet: 0.00035), at most 1 (Adam moves every weight by about this much a
        step: larger ones saturate the policy's softmax at once).
      adam_beta1, adam_beta2, adam_epsilon: Adam's moment decays and epsilon (Kingma & Ba defaults).
      batch_size: K, rewards per policy update: the policy is updated once every K accepted rewards.
      epochs: optimizer steps on each batch (PPO reuses a batch for several epochs).
      clip_epsilon: PPO's ratio clip: the objective ignores ratios outside [1 - eps, 1 + eps].
      entropy_weight: weight of the policy entropy bonus (mean over decisions, in nats) (NASNet: 0.00001); with
        ``entropy_target`` set, only its value at the first update (it is then adapted, within [0.001, 10]).
      baseline_decay: the reward baseline is ``b <- decay * b + (1 - decay) * reward`` (NASNet: 0.95).
      normalize_advantages: divide each batch's advantages (reward - baseline) by their standard deviation, so
        the step size does not depend on the reward's scale (AP differences of 0.01 vs 0.1). A batch whose
        advantages are all (nearly) equal is left unscaled.
      center_advantages: subtract the batch's mean advantage first (before scaling), so each update reinforces
        the better part of a batch against the worse rather than the whole batch against a lagging baseline
        (which, batch after batch, sharpens the policy whatever it samples). Needs ``batch_size`` >= 2.
      entropy_target: the policy's entropy to hold, as a fraction in (0, 1) of the uniform policy's mean entropy
        per decision, measured on each batch before its update; None: a fixed ``entropy_weight``.
      entropy_adapt_rate: the dual-ascent step: after an update the weight is multiplied by
        ``exp(rate * (entropy_target - entropy fraction))``.
      dedup_attempts: samples per proposal, at most: while the sampled architecture is already known to this
        controller (proposed, or replayed by `recover`), the next of these is tried; if all are known the first
        is proposed anyway (a repeat). 1: no dedup. Each proposal draws this many sequences' uniforms, used or
        not, so the random stream does not depend on what was known.
      elite_size: the best this many distinct architectures so far (by reward) are kept, and every update adds
        ``elite_weight`` times their mean negative log-likelihood per decision to the loss (0: none).
      elite_weight: weight of that imitation term.
      learning_rate_halflife: the learning rate is divided by ``1 + updates / halflife`` (inverse-time decay over
        policy updates), so early updates move the policy far and late ones refine it; None: constant.
      max_grad_norm: clip the gradient's global norm to this (None: no clipping).
      reward_for_failure: see `ControllerConfig`.
      max_consecutive_failures: see `ControllerConfig`.
    """

    hidden_size: int = 100
    embedding_size: int = 32
    init_scale: float = 0.1
    learning_rate: float = 0.02
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-7
    batch_size: int = 5
    epochs: int = 4
    clip_epsilon: float = 0.2
    entropy_weight: float = 0.01
    baseline_decay: float = 0.95
    normalize_advantages: bool = True
    center_advantages: bool = True
    entropy_target: float | None = 0.3
    entropy_adapt_rate: float = 1.0
    dedup_attempts: int = 10
    elite_size: int = 20
    elite_weight: float = 1.0
    learning_rate_halflife: float | None = 100.0
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        checks = [
            ("hidden_size", _is_int(self.hidden_size) and 1 <= self.hidden_size <= MAX_WIDTH,
             f"an integer in [1, {MAX_WIDTH}]"),
            ("embedding_size", _is_int(self.embedding_size) and 1 <= self.embedding_size <= MAX_WIDTH,
             f"an integer in [1, {MAX_WIDTH}]"),
            ("init_scale", _is_num(self.init_scale) and 0 < self.init_scale <= 1, "a number in (0, 1]"),
            ("learning_rate", _is_num(self.learning_rate) and 0 < self.learning_rate <= 1, "a number in (0, 1]"),
            ("adam_beta1", _is_num(self.adam_beta1) and 0 <= self.adam_beta1 < 1, "a number in [0, 1)"),
            ("adam_beta2", _is_num(self.adam_beta2) and 0 <= self.adam_beta2 < 1, "a number in [0, 1)"),
            ("adam_epsilon", _is_num(self.adam_epsilon) and self.adam_epsilon > 0, "a number > 0"),
            ("batch_size", _is_int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            ("epochs", _is_int(self.epochs) and 1 <= self.epochs <= MAX_EPOCHS, f"an integer in [1, {MAX_EPOCHS}]"),
            ("clip_epsilon", _is_num(self.clip_epsilon) and 0 < self.clip_epsilon < 1, "a number in (0, 1)"),
            ("entropy_weight", _is_num(self.entropy_weight) and self.entropy_weight >= 0, "a number >= 0"),
            ("baseline_decay", _is_num(self.baseline_decay) and 0 <= self.baseline_decay < 1, "a number in [0, 1)"),
            ("normalize_advantages", isinstance(self.normalize_advantages, bool), "true or false"),
            ("center_advantages", isinstance(self.center_advantages, bool), "true or false"),
            (
                "entropy_target",
                self.entropy_target is None or (_is_num(self.entropy_target) and 0 < self.entropy_target < 1),
                "a number in (0, 1) or None",
            ),
            ("entropy_adapt_rate", _is_num(self.entropy_adapt_rate) and 0 < self.entropy_adapt_rate <= 10,
             "a number in (0, 10]"),
            ("elite_size", _is_int(self.elite_size) and 0 <= self.elite_size <= MAX_ELITES,
             f"an integer in [0, {MAX_ELITES}]"),
            ("elite_weight", _is_num(self.elite_weight) and self.elite_weight >= 0, "a number >= 0"),
            (
                "learning_rate_halflife",
                self.learning_rate_halflife is None
                or (_is_num(self.learning_rate_halflife) and self.learning_rate_halflife > 0),
                "a number > 0 or None",
            ),
            ("dedup_attempts", _is_int(self.dedup_attempts) and 1 <= self.dedup_attempts <= MAX_DEDUP_ATTEMPTS,
             f"an integer in [1, {MAX_DEDUP_ATTEMPTS}]"),
            (
                "max_grad_norm",
                self.max_grad_norm is None or (_is_num(self.max_grad_norm) and self.max_grad_norm > 0),
                "a number > 0 or None",
            ),
        ]
        for field, ok, expected in checks:
            _require(name, field, ok, expected, getattr(self, field))
        for flag, why in (("normalize_advantages", "a standard deviation"), ("center_advantages", "a batch mean")):
            if getattr(self, flag) and self.batch_size < 2:
                raise ValueError(
                    f"{name}.batch_size: expected >= 2 when {flag} is true ({why} needs two rewards), "
                    f"got {self.batch_size}"
                )
