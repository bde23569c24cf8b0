"""The RL controller: an autoregressive LSTM policy over the decisions, trained with PPO (NASNet / NAS-FPN recipe).

This is the only module of `controller` that imports TensorFlow; the registry imports it on first use.

The policy (Zoph & Le 2017; NASNet, Zoph et al. 2018): an LSTM reads, at step t, the embedding of the decision
taken at step t-1 (a start token at t = 0) and a softmax head turns its output into a distribution over the
choices of decision t. Steps have different numbers of choices, so the heads are padded to the widest step and the
logits beyond a step's count are masked with the search space's ``choice_mask()`` (NNI's ``TuningEnvironment``
passes the same per-step action_dim). Embedding rows and head columns exist only for real choices.

Training (PPO, Schulman et al. 2017) uses the clipped objective with the advantage ``reward - baseline``, where
the baseline is an exponential moving average of the rewards (NASNet), plus an entropy bonus, with Adam. Each
decision is an action that shares its architecture's advantage, so the probability ratios are per decision (a
ratio over all 46 decisions of a SpineNet-49 architecture would leave the clip range after a tiny step). The
policy is updated once every ``batch_size`` accepted rewards, with ``epochs`` optimizer steps on that batch.

**Old policy.** PPO's ratios are taken against the policy as it is when the batch is complete, not as it was when
each architecture was sampled. With asynchronous trials an architecture can be sampled several updates before its
reward arrives; the clip then bounds the step from the current policy (which is what keeps PPO stable), and the
controller's state depends only on the rewards and their order, so `recover` can rebuild it exactly (see
`controller.base`).

**Exploration.** See `PPOConfig`: the advantages are centered and scaled per batch, the entropy weight is adapted
towards ``entropy_target`` after every update, a proposal already known to the controller is resampled up to
``dedup_attempts`` times, and a priority queue of the best architectures (``elite_size``) adds an imitation term.

**Determinism.** All randomness comes from the base class's numpy generator: the initial weights, and
``dedup_attempts`` uniforms per decision per proposal (all drawn, whichever attempts are used), turned into choices
by inverse-CDF sampling inside the compiled sampler. TensorFlow's own random ops are never used. `state_dict`
stores the weights and Adam's moments bit-exactly, with the adapted entropy weight, the known architectures' keys
and the priority queue (state version 2; a version-1 state, from before these, is upgraded: it knows no
architectures, and its entropy weight starts at the config's).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

# The search driver imports TensorFlow only for this small policy: keep TF's C++ info and warning lines (CUDA
# probing, CPU features, oneDNN) off the user's console, unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from controller.base import Controller, Decisions, array_from_json, array_to_json
from controller.config import PPOConfig

logger = logging.getLogger(__name__)

# Logit of a masked choice: exp() of it is 0 in float32, and it stays finite so 0 * logit is 0, not NaN.
_MASKED_LOGIT = -1e9
# Order of the trainable weights in `state_dict` (and in the optimizer's slot lists).
_WEIGHTS = ("embedding", "lstm_kernel", "lstm_bias", "head_kernel", "head_bias")
# The adapted entropy weight stays within these. The objective of normalized advantages is of order 1 per decision,
# so a weight far under 0.001 no longer holds the entropy up, and a floor near that lets the weight climb back
# within a few updates when the entropy falls under the target (every tuning run used this floor).
MIN_ENTROPY_WEIGHT = 1e-3
MAX_ENTROPY_WEIGHT = 10.0


class PPOController(Controller):
    """Samples decision sequences from an LSTM policy and trains it with PPO (see the module docstring).

    Args:
      space: the search space: ``num_choices``, and ``choice_mask()`` (computed from ``num_choices`` when the
        space has none).
      seed: seeds the initial weights and the sampling (None: fresh entropy).
      config: a `PPOConfig` (None: defaults, documented there).

    Raises:
      ValueError: for a bad config or seed, or a choice mask that disagrees with ``num_choices``.
    """

    name = "ppo"
    config_cls = PPOConfig

    # --------------------------------------------------------------------------------------------- build
    def _setup(self) -> None:
        cfg = self.config
        nc = np.asarray(self.num_choices, dtype=np.int64)
        steps, width = len(nc), int(nc.max())
        if hasattr(self.space, "choice_mask"):
            mask = np.asarray(self.space.choice_mask(), dtype=bool)
        else:
            mask = np.arange(width)[None, :] < nc[:, None]
        expected = np.arange(width)[None, :] < nc[:, None]
        if mask.shape != expected.shape or not np.array_equal(mask, expected):
            raise ValueError(
                f"PPOController space: expected choice_mask() of shape {expected.shape} with the first "
                f"num_choices[t] entries of row t True, got shape {mask.shape} with row counts {mask.sum(axis=-1)}"
            )
        self._steps = steps
        offsets = np.concatenate([[0], np.cumsum(nc)[:-1]])
        total = int(nc.sum())
        # Padded head row of step t, choice c -> row of the compact head (0 where masked; never used).
        head_index = np.where(mask, offsets[:, None] + np.arange(width)[None, :], 0)
        self._mask = tf.constant(mask)
        self._head_index = tf.constant(head_index.reshape(-1), dtype=tf.int32)
        self._offsets_np = offsets + 1  # embedding row of (step t, choice c) is offsets[t] + 1 + c
        self._offsets = tf.constant(offsets + 1, dtype=tf.int32)
        self._width = width

        h, e, s = cfg.hidden_size, cfg.embedding_size, cfg.init_scale
        shapes = {
            "embedding": (total + 1, e),  # row 0: the start token
            "lstm_kernel": (e + h, 4 * h),
            "lstm_bias": (4 * h,),
            "head_kernel": (total, h),  # row offsets[t] + c: the head of step t, choice c
            "head_bias": (total,),
        }
        self._vars: dict[str, tf.Variable] = {}
        for name in _WEIGHTS:
            shape = shapes[name]
            if name.endswith("bias"):
                init = np.zeros(shape, np.float32)
            else:
                init = self._rng.uniform(-s, s, size=shape).astype(np.float32)
            self._vars[name] = tf.Variable(init, name=name, trainable=True)
        self._adam_m = {n: tf.Variable(tf.zeros(shapes[n]), name=f"{n}_m", trainable=False) for n in _WEIGHTS}
        self._adam_v = {n: tf.Variable(tf.zeros(shapes[n]), name=f"{n}_v", trainable=False) for n in _WEIGHTS}
        self._adam_step = tf.Variable(0.0, name="adam_step", trainable=False)
        self._no_peephole = tf.zeros([h])
        self._baseline: float | None = None
        self._batch: list[tuple[Decisions, float]] = []  # (decisions, reward - baseline) awaiting an update
        self._num_updates = 0
        self._last_stats: dict[str, float] = {}
        # The entropy bonus's weight: fixed, or adapted after every update towards `entropy_target`.
        self._entropy_weight = float(cfg.entropy_weight)
        # The uniform policy's mean entropy per decision (nats): the scale of `entropy_target`.
        self._max_entropy = float(np.mean(np.log(nc)))
        # Dedup keys of everything proposed (or replayed) so far, and how many proposals were repeats anyway.
        self._known: set[int] = set()
        self._num_repeats = 0
        self._elites: list[tuple[float, int, Decisions]] = []  # (reward, its feedback's number, decisions)
        self._decode = getattr(self.space, "decode", None)

        self._sample_fn = tf.function(
            self._sample_graph, input_signature=[tf.TensorSpec([None, steps], tf.float32)], reduce_retracing=True
        )
        self._update_fn = tf.function(
            self._update_graph,
            input_signature=[
                tf.TensorSpec([None, steps], tf.int32),
                tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([None, steps], tf.int32),
            ],
            reduce_retracing=True,
        )

    # --------------------------------------------------------------------------------------------- policy
    # The graphs below run tiny matrices over many steps (46 decisions for SpineNet-49), so their cost is the number
    # of ops, not FLOPs. The LSTM is therefore TensorFlow's fused LSTM kernel: `BlockLSTM` over the whole sequence
    # for training (one op forward, one backward, with TensorFlow's registered gradient) and `LSTMBlockCell`, the
    # same cell one step at a time, for sampling. Both use the kernel [input + hidden, 4 * hidden] with gates in the
    # order (input, cell, forget, output), no peepholes, no cell clipping and no forget bias beyond the learned one.
    def _lstm_cell(self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One LSTM step: (h, c)."""
        out = tf.raw_ops.LSTMBlockCell(
            x=x, cs_prev=c, h_prev=h, w=self._vars["lstm_kernel"], wci=self._no_peephole, wcf=self._no_peephole,
            wco=self._no_peephole, b=self._vars["lstm_bias"], forget_bias=0.0, cell_clip=-1.0, use_peephole=False,
        )
        return out[6], out[1]

    def _lstm_sequence(self, xs: tf.Tensor) -> tf.Tensor:
        """The LSTM over a sequence from the zero state: inputs [steps, n, embedding] -> outputs [steps, n, hidden]."""
        zeros = tf.zeros([tf.shape(xs)[1], self.config.hidden_size])
        out = tf.raw_ops.BlockLSTM(
            seq_len_max=tf.constant(self._steps, tf.int64), x=xs, cs_prev=zeros, h_prev=zeros,
            w=self._vars["lstm_kernel"], wci=self._no_peephole, wcf=self._no_peephole, wco=self._no_peephole,
            b=self._vars["lstm_bias"], forget_bias=0.0, cell_clip=-1.0, use_peephole=False,
        )
        return out[6]

    def _padded_head(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The heads padded to the widest step: kernels [steps, width, hidden] and biases [steps, width], the biases
        of masked choices at -1e9. Gathers whole rows of the compact head (cheap, and so is the gradient)."""
        kernel = tf.reshape(
            tf.gather(self._vars["head_kernel"], self._head_index), [self._steps, self._width, -1]
        )
        bias = tf.reshape(tf.gather(self._vars["head_bias"], self._head_index), [self._steps, self._width])
        return kernel, tf.where(self._mask, bias, _MASKED_LOGIT)

    def _sample_graph(self, uniforms: tf.Tensor) -> tf.Tensor:
        """Samples one sequence per row of `uniforms` by inverse CDF; returns decisions [n, steps]."""
        n = tf.shape(uniforms)[0]
        kernel, bias = self._padded_head()
        kernels, biases = tf.unstack(kernel), tf.unstack(bias)
        us = tf.unstack(uniforms[:, :, None], num=self._steps, axis=1)
        h = tf.zeros([n, self.config.hidden_size])
        c = tf.zeros([n, self.config.hidden_size])
        x = tf.gather(self._vars["embedding"], tf.zeros([n], tf.int32))
        choices = []
        for t in range(self._steps):
            h, c = self._lstm_cell(x, h, c)
            cdf = tf.cumsum(tf.nn.softmax(tf.matmul(h, kernels[t], transpose_b=True) + biases[t]), axis=-1)
            below = tf.reduce_sum(tf.cast(cdf <= us[t], tf.int32), axis=1)
            choice = tf.minimum(below, self.num_choices[t] - 1)  # rounding can leave the cdf just under u
            choices.append(choice)
            x = tf.gather(self._vars["embedding"], choice + int(self._offsets_np[t]))
        return tf.stack(choices, axis=1)

    def _forward(self, decisions: tf.Tensor) -> tf.Tensor:
        """Teacher-forced log-probabilities of every choice, [n, steps, width] (masked choices: about -1e9)."""
        n = tf.shape(decisions)[0]
        prev = tf.concat([tf.zeros([n, 1], tf.int32), self._offsets[None, :-1] + decisions[:, :-1]], axis=1)
        xs = tf.gather(self._vars["embedding"], tf.transpose(prev))  # [steps, n, embedding]
        outputs = self._lstm_sequence(xs)  # [steps, n, hidden]
        kernel, bias = self._padded_head()
        logits = tf.einsum("tnh,tch->ntc", outputs, kernel) + bias
        return tf.nn.log_softmax(logits, axis=-1)

    def _log_probs(self, decisions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Log-probabilities [n, steps] of `decisions` and the per-step entropies [n, steps]."""
        logp_all = self._forward(decisions)
        logp = tf.gather(logp_all, decisions, axis=2, batch_dims=2)
        entropy = -tf.reduce_sum(tf.where(self._mask[None], tf.exp(logp_all) * logp_all, 0.0), axis=-1)
        return logp, entropy

    def _update_graph(
        self, decisions: tf.Tensor, advantages: tf.Tensor, entropy_weight: tf.Tensor, elites: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """`epochs` Adam steps on PPO's clipped objective for one batch.

        The first step also records the log-probabilities of the policy before the update (its ratios are 1) and
        its entropy (``entropy_before``); the other steps run in a graph loop rather than unrolled, which keeps the
        trace short.
        """
        logp, stats = self._ppo_step(decisions, advantages, entropy_weight, elites, None)
        before = stats["entropy"]
        old = tf.stop_gradient(logp)
        for _ in tf.range(self.config.epochs - 1):
            _, stats = self._ppo_step(decisions, advantages, entropy_weight, elites, old)
        return {**stats, "entropy_before": before}

    def _ppo_step(
        self, decisions: tf.Tensor, advantages: tf.Tensor, entropy_weight: tf.Tensor, elites: tf.Tensor,
        old: tf.Tensor | None,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        cfg = self.config
        adv = advantages[:, None]
        n = tf.shape(decisions)[0]
        weights = [self._vars[name] for name in _WEIGHTS]
        with tf.GradientTape() as tape:
            logp_all, entropy_all = self._log_probs(tf.concat([decisions, elites], axis=0))
            logp, entropy = logp_all[:n], entropy_all[:n]
            ratio = tf.exp(logp - (tf.stop_gradient(logp) if old is None else old))
            clipped = tf.clip_by_value(ratio, 1.0 - cfg.clip_epsilon, 1.0 + cfg.clip_epsilon)
            objective = tf.reduce_mean(tf.minimum(ratio * adv, clipped * adv))
            mean_entropy = tf.reduce_mean(entropy)
            loss = -objective - entropy_weight * mean_entropy
            # Priority-queue training: the negative log-likelihood per decision of the best sequences so far.
            elite_nll = -tf.reduce_sum(logp_all[n:]) / tf.cast(tf.maximum(tf.size(logp_all[n:]), 1), tf.float32)
            if cfg.elite_size > 0:
                loss = loss + cfg.elite_weight * elite_nll
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, weights)]
        if cfg.max_grad_norm is not None:
            grads, _ = tf.clip_by_global_norm(grads, cfg.max_grad_norm)
        self._adam(grads)
        clip_fraction = tf.reduce_mean(tf.cast(tf.abs(ratio - 1.0) > cfg.clip_epsilon, tf.float32))
        return logp, {"loss": loss, "entropy": mean_entropy, "clip_fraction": clip_fraction, "elite_nll": elite_nll}

    def _adam(self, grads: list[tf.Tensor]) -> None:
        """One Adam step (Kingma & Ba 2015, Algorithm 1 with the bias corrections folded into the step size)."""
        cfg = self.config
        step = self._adam_step.assign_add(1.0)
        lr = cfg.learning_rate * tf.sqrt(1.0 - cfg.adam_beta2**step) / (1.0 - cfg.adam_beta1**step)
        if cfg.learning_rate_halflife is not None:  # inverse-time decay over the updates
            updates = tf.floor((step - 1.0) / cfg.epochs)
            lr = lr / (1.0 + updates / cfg.learning_rate_halflife)
        for name, g in zip(_WEIGHTS, grads):
            m = self._adam_m[name].assign(cfg.adam_beta1 * self._adam_m[name] + (1.0 - cfg.adam_beta1) * g)
            v = self._adam_v[name].assign(cfg.adam_beta2 * self._adam_v[name] + (1.0 - cfg.adam_beta2) * g * g)
            self._vars[name].assign_sub(lr * m / (tf.sqrt(v) + cfg.adam_epsilon))

    # --------------------------------------------------------------------------------------------- hooks
    def _propose(self, n: int) -> list[tuple[Decisions, dict[str, Any]]]:
        k = self.config.dedup_attempts
        u = self._uniforms(n, k * self._steps).astype(np.float32).reshape(n, k, self._steps)
        # Attempt j of a proposal samples from its j-th row of uniforms, and only when attempts 0..j-1 are all known:
        # the proposals' first attempts in one call, a second attempt alone, and the rest at once (on a busy CPU a
        # call of one row costs a fraction of one of several rows, and most first or second attempts are new).
        firsts = [tuple(int(x) for x in row) for row in self._sample_fn(tf.constant(u[:, 0])).numpy()]
        if k == 1:
            return [(d, {}) for d in firsts]
        out = []
        for i, first in enumerate(firsts):
            chosen, key, attempts = first, self._dedup_key(first), 1
            first_key = key
            rows: list[Decisions] = []  # attempts sampled, not yet looked at
            while key in self._known and attempts < k:
                if not rows:  # the second attempt alone; if that is known too, all the others at once
                    end = attempts + 1 if attempts == 1 else k
                    rows = [tuple(int(x) for x in r) for r in self._sample_fn(tf.constant(u[i, attempts:end])).numpy()]
                chosen = rows.pop(0)
                key = self._dedup_key(chosen)
                attempts += 1
            extras: dict[str, Any] = {"attempts": attempts}
            if key in self._known:  # every attempt was known: the policy's first sample, a repeat
                chosen, key = first, first_key
                self._num_repeats += 1
                extras["repeat"] = True
            self._known.add(key)
            out.append((chosen, extras))
        return out

    def _replay(self, decisions: Decisions) -> None:
        self._uniforms(1, self.config.dedup_attempts * self._steps)
        if self.config.dedup_attempts > 1:
            key = self._dedup_key(decisions)
            # Of the trials of one key, all but the first replayed were repeats, in whatever order they come back.
            self._num_repeats += key in self._known
            self._known.add(key)

    def _dedup_key(self, decisions: Decisions) -> int:
        """64 bits that identify what `decisions` builds: the architecture's key when the space can decode
        decisions (architectures that differ only in encoding then count as one), else the decisions themselves."""
        if self._decode is not None:
            return int(self._decode(decisions).key[:16], 16)
        return int.from_bytes(hashlib.sha256(np.asarray(decisions, np.int64).tobytes()).digest()[:8], "big")

    def _feedback(self, trial_id: int, decisions: Decisions, reward: float) -> None:
        cfg = self.config
        if cfg.elite_size > 0 and all(d != decisions for _, _, d in self._elites):
            # The best `elite_size` sequences so far, best first; of equal rewards the earlier stays ahead.
            self._elites.append((reward, self.num_rewards, decisions))
            self._elites.sort(key=lambda e: (-e[0], e[1]))
            del self._elites[cfg.elite_size :]
        if self._baseline is None:
            self._baseline = reward
        advantage = reward - self._baseline
        self._baseline = cfg.baseline_decay * self._baseline + (1.0 - cfg.baseline_decay) * reward
        self._batch.append((decisions, advantage))
        if len(self._batch) >= cfg.batch_size:
            self._update()

    def _update(self) -> None:
        cfg = self.config
        decisions = np.asarray([d for d, _ in self._batch], dtype=np.int32)
        adv = np.asarray([a for _, a in self._batch], dtype=np.float64)
        if cfg.center_advantages:
            adv = adv - adv.mean()
        if cfg.normalize_advantages:
            std = adv.std()
            # A batch of (nearly) equal rewards, e.g. the same architecture every time, is left unscaled: dividing
            # by a vanishing spread would blow rounding differences up into full-size updates.
            if std > 1e-6 * max(1.0, abs(self._baseline or 0.0)):
                adv = adv / std
        weight = self._entropy_weight
        elites = np.asarray([d for _, _, d in self._elites], dtype=np.int32).reshape(-1, self._steps)
        stats = self._update_fn(
            tf.constant(decisions), tf.constant(adv.astype(np.float32)), tf.constant(weight, tf.float32),
            tf.constant(elites),
        )
        self._batch = []
        self._num_updates += 1
        self._last_stats = {k: float(v) for k, v in stats.items()}
        self._last_stats["entropy_weight"] = weight
        if cfg.entropy_target is not None:
            # Dual ascent on the weight, as SAC tunes its temperature (Haarnoja et al. 2018, section 5): up while
            # the policy's entropy on the batch is under the target, down while over, in proportion to the gap.
            gap = cfg.entropy_target - self._last_stats["entropy_before"] / self._max_entropy
            self._entropy_weight = float(
                min(MAX_ENTROPY_WEIGHT, max(MIN_ENTROPY_WEIGHT, weight * math.exp(cfg.entropy_adapt_rate * gap)))
            )
        logger.debug("PPO update %d: %s, baseline %.4f", self._num_updates, self._last_stats, self._baseline)

    @property
    def num_updates(self) -> int:
        """Policy updates done so far."""
        return self._num_updates

    @property
    def last_update_stats(self) -> dict[str, float]:
        """Loss, mean entropy (nats per decision) and clip fraction of the last update's last step (for logs)."""
        return dict(self._last_stats)

    def probabilities(self, decisions: Decisions | None = None) -> list[np.ndarray]:
        """The policy's distribution of each decision, given the earlier decisions of `decisions`.

        Args:
          decisions: the sequence to condition on (its own choices are fed back); None takes each step's most
            likely choice (greedy decoding).

        Returns:
          One probability vector per decision, of length ``num_choices[t]``.
        """
        if decisions is None:
            d: list[int] = []
            probs = []
            for t in range(self._steps):
                padded = d + [0] * (self._steps - len(d))
                p = self._step_probs(padded)[t]
                probs.append(p)
                d.append(int(np.argmax(p)))
            return probs
        return self._step_probs(list(self._check_decisions(decisions, "decisions")))

    def _step_probs(self, decisions: list[int]) -> list[np.ndarray]:
        logp = self._forward(tf.constant([decisions], tf.int32)).numpy()
        return [np.exp(logp[0, t, :n]) for t, n in enumerate(self.num_choices)]

    # --------------------------------------------------------------------------------------------- state
    def _state_dict(self) -> dict[str, Any]:
        return {
            "weights": {n: array_to_json(self._vars[n].numpy()) for n in _WEIGHTS},
            "adam_m": {n: array_to_json(self._adam_m[n].numpy()) for n in _WEIGHTS},
            "adam_v": {n: array_to_json(self._adam_v[n].numpy()) for n in _WEIGHTS},
            "adam_step": float(self._adam_step.numpy()),
            "baseline": self._baseline,
            "batch": [[list(d), a] for d, a in self._batch],
            "num_updates": self._num_updates,
            "entropy_weight": self._entropy_weight,
            "known": array_to_json(np.asarray(sorted(self._known), dtype=np.uint64)),
            "num_repeats": self._num_repeats,
            "elites": [[r, i, list(d)] for r, i, d in self._elites],
        }

    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        where = "PPOController state"
        try:
            arrays = {
                group: {n: array_from_json(state[group][n]) for n in _WEIGHTS}
                for group in ("weights", "adam_m", "adam_v")
            }
            adam_step = float(state["adam_step"])
            baseline = None if state["baseline"] is None else float(state["baseline"])
            batch = [(self._check_decisions(d, f"{where}['batch']"), float(a)) for d, a in state["batch"]]
            num_updates = int(state["num_updates"])
            entropy_weight = float(state["entropy_weight"])
            known = array_from_json(state["known"])
            num_repeats = int(state["num_repeats"])
            elites = [(float(r), int(i), self._check_decisions(d, f"{where}['elites']")) for r, i, d in state["elites"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{where}: expected the output of state_dict(), got a malformed state ({e!r})") from None
        for group, values in arrays.items():
            for n, a in values.items():
                expected = tuple(self._vars[n].shape)
                if a.shape != expected or a.dtype != np.float32:
                    raise ValueError(
                        f"{where}: {group}.{n} expected float32 of shape {expected} (hidden_size, embedding_size "
                        f"and the space must match), got {a.dtype} of shape {a.shape}"
                    )
        if baseline is not None and not math.isfinite(baseline):
            raise ValueError(f"{where}: baseline expected a finite number or None, got {baseline!r}")
        if not (math.isfinite(entropy_weight) and entropy_weight >= 0):
            raise ValueError(f"{where}: entropy_weight expected a finite number >= 0, got {entropy_weight!r}")
        if known.dtype != np.uint64 or known.ndim != 1:
            raise ValueError(f"{where}: known expected a 1-d uint64 array, got {known.dtype} of shape {known.shape}")
        for n in _WEIGHTS:
            self._vars[n].assign(arrays["weights"][n])
            self._adam_m[n].assign(arrays["adam_m"][n])
            self._adam_v[n].assign(arrays["adam_v"][n])
        self._adam_step.assign(adam_step)
        self._baseline = baseline
        self._batch = batch
        self._num_updates = num_updates
        self._entropy_weight = entropy_weight
        self._known = {int(x) for x in known}
        self._num_repeats = num_repeats
        self._elites = elites

    @classmethod
    def _upgrade_algorithm_state(cls, algorithm: Mapping[str, Any], config: PPOConfig) -> dict[str, Any]:
        """A version-1 state (before dedup and the entropy target) in today's layout: its entropy weight is the
        config's, and it knows no proposals (version 1 kept none), so dedup starts from the next one."""
        return {
            **algorithm,
            "entropy_weight": float(config.entropy_weight),
            "known": array_to_json(np.zeros(0, np.uint64)),
            "num_repeats": 0,
            "elites": [],
        }
