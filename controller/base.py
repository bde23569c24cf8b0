"""The controller interface: `Proposal`, `ControllerStatus` and the template-method `Controller` base.

A controller proposes decision sequences and learns from their rewards. The public methods do the bookkeeping
(trial ids, pending trials, failed and repeated feedback, state, recovery); subclasses implement the algorithm in
`_propose`, `_replay`, `_feedback`, `_state_dict` and `_load_state_dict`, as PyGlove's ``DNAGenerator`` does.

**Why recovery can be exact.** Every controller here keeps its state a function of two things only: how many
proposals it has made, and the rewards it has accepted, in the order they arrived. Each proposal draws a fixed
number of random numbers from one `numpy.random.Generator`, whatever the controller's state, so replaying a
proposal (`_replay`) advances the generator exactly as proposing it did. Replaying the finished trials of a search
in the order their feedback arrived therefore rebuilds the state of the uninterrupted run.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import enum
import logging
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from controller.config import ControllerConfig
from search_space.errors import InvalidDecisionError

logger = logging.getLogger(__name__)

# Version of the `state_dict` layout. Bump it when the layout changes; `load_state_dict` upgrades the versions in
# `OLD_STATE_VERSIONS` and refuses any other. 2: PPO's dedup keys and adapted entropy weight, and its config fields
# of those (`PPOConfig.dedup_attempts`, `entropy_target`, ...); the other controllers' layout is version 1's.
STATE_VERSION = 2
OLD_STATE_VERSIONS = (1,)

Decisions = tuple[int, ...]


class ChoiceSpace(Protocol):
    """What a controller needs of a search space (`search_space.SearchSpace` provides it)."""

    @property
    def num_choices(self) -> tuple[int, ...]: ...


@dataclasses.dataclass(frozen=True)
class Proposal:
    """One architecture to evaluate.

    Attributes:
      trial_id: the controller's id for the trial; pass it back to `Controller.feedback`.
      decisions: the decision sequence (decode it with the search space).
      extras: JSON-safe notes from the controller (e.g. the parent of a mutation, the policy's log-probability).
    """

    trial_id: int
    decisions: Decisions
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


class ControllerStatus(str, enum.Enum):
    """Where a controller is in its life (compare NNI's ``StrategyStatus``).

    NEW: nothing proposed yet. RUNNING: proposing and learning. STOPPED: the last
    ``config.max_consecutive_failures`` trials all failed; `propose` raises until a trial succeeds.
    """

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Controller(abc.ABC):
    """Base class of every controller: proposals, feedback, state and recovery.

    Args:
      space: the search space; only ``num_choices`` is used (and ``choice_mask()`` by the RL controller).
      seed: seeds the controller's random generator; None draws fresh entropy (the state still records the
        generator, so a run can be resumed either way).
      config: the controller's config; None takes the defaults of `config_cls`.

    Raises:
      ValueError: for a config of the wrong type, a bad seed, or a space without choices.

    Example::

      ctrl = build_controller('evolution', SearchSpace('spinenet49'), seed=0)
      for p in ctrl.propose(8):
          ctrl.feedback(p.trial_id, evaluate(space.decode(p.decisions)))  # None for a failed trial
      saved = json.dumps(ctrl.state_dict())
    """

    #: Registry name ('ppo', 'evolution', 'random').
    name: ClassVar[str] = ""
    #: The config class this controller takes.
    config_cls: ClassVar[type[ControllerConfig]] = ControllerConfig

    def __init__(self, space: ChoiceSpace, *, seed: int | None = None, config: ControllerConfig | None = None) -> None:
        config = self.config_cls() if config is None else config
        if type(config) is not self.config_cls:
            raise ValueError(
                f"{type(self).__name__} config: expected a {self.config_cls.__name__}, got {type(config).__name__}"
            )
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise ValueError(f"{type(self).__name__} seed: expected an integer >= 0 or None, got {seed!r}")
        num_choices = tuple(int(n) for n in space.num_choices)
        if not num_choices or min(num_choices) < 1:
            raise ValueError(
                f"{type(self).__name__} space: expected at least one decision, each with >= 1 choice, "
                f"got num_choices={num_choices}"
            )
        self.space = space
        self.config = config
        self.seed = None if seed is None else int(seed)
        self.num_choices: tuple[int, ...] = num_choices
        self._rng = np.random.default_rng(self.seed)
        self._next_trial_id = 0
        self._pending: dict[int, Decisions] = {}
        self._num_rewards = 0
        self._num_failures = 0
        self._consecutive_failures = 0
        self._setup()

    # ------------------------------------------------------------------------------------------- public API
    @property
    def status(self) -> ControllerStatus:
        """NEW, RUNNING or STOPPED (see `ControllerStatus`)."""
        limit = self.config.max_consecutive_failures
        if limit is not None and self._consecutive_failures >= limit:
            return ControllerStatus.STOPPED
        if self._next_trial_id == 0:
            return ControllerStatus.NEW
        return ControllerStatus.RUNNING

    @property
    def pending(self) -> tuple[Proposal, ...]:
        """Proposals that have had no feedback yet, oldest first."""
        return tuple(Proposal(tid, d) for tid, d in sorted(self._pending.items()))

    @property
    def num_proposed(self) -> int:
        """Proposals made (or replayed) so far; also the next trial id."""
        return self._next_trial_id

    @property
    def num_rewards(self) -> int:
        """Rewards the controller has learned from (failed trials count when `reward_for_failure` is set)."""
        return self._num_rewards

    def propose(self, n: int = 1) -> list[Proposal]:
        """Proposes `n` new trials. Trial ids count up from 0 in proposal order.

        Args:
          n: how many proposals (>= 0).

        Returns:
          `n` proposals; they stay pending until their feedback arrives.

        Raises:
          ValueError: when `n` is not an integer >= 0.
          RuntimeError: when the controller is STOPPED.
        """
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"propose(n): expected an integer >= 0, got {n!r}")
        if self.status is ControllerStatus.STOPPED:
            raise RuntimeError(
                f"{type(self).__name__} is stopped: the last {self._consecutive_failures} trials failed "
                f"(max_consecutive_failures={self.config.max_consecutive_failures}); fix the trials, or feed back "
                "a successful one, before proposing more"
            )
        if n == 0:
            return []
        items = self._propose(int(n))
        out = []
        for decisions, extras in items:
            tid = self._next_trial_id
            self._next_trial_id += 1
            self._pending[tid] = tuple(int(x) for x in decisions)
            out.append(Proposal(tid, self._pending[tid], dict(extras)))
            logger.debug("[Trial %4d] proposed %s", tid, list(self._pending[tid]))
        return out

    def feedback(self, trial_id: int, reward: float | None) -> None:
        """Reports a trial's reward.

        Args:
          trial_id: a pending trial's id.
          reward: the reward, or None when the trial failed. NaN and infinite rewards are failures too. A failure
            gets ``config.reward_for_failure``, or is skipped when that is None.

        Raises:
          RuntimeError: when `trial_id` was never proposed (a second feedback for the same trial only logs a
            warning and is ignored).
          ValueError: when `reward` is not a number or None.
        """
        if not isinstance(trial_id, (int, np.integer)) or isinstance(trial_id, bool):
            raise ValueError(f"feedback trial_id: expected an integer, got {trial_id!r}")
        trial_id = int(trial_id)
        if trial_id not in self._pending:
            if 0 <= trial_id < self._next_trial_id:
                logger.warning("[Trial %4d] second feedback ignored (reward %r): it already had one", trial_id, reward)
                return
            shown = sorted(self._pending)[:10]
            raise RuntimeError(
                f"feedback for unknown trial {trial_id}: expected the id of a pending trial "
                f"({len(self._pending)} pending{': ' + str(shown) if shown else ''}"
                f"{' ...' if len(self._pending) > 10 else ''}; ids 0..{self._next_trial_id - 1} were proposed)"
            )
        if reward is not None and (
            isinstance(reward, (bool, np.bool_)) or not isinstance(reward, (int, float, np.integer, np.floating))
        ):
            raise ValueError(f"[Trial {trial_id}] reward: expected a number or None, got {reward!r}")
        decisions = self._pending.pop(trial_id)
        value = None if reward is None else float(reward)
        if value is None or not math.isfinite(value):
            self._num_failures += 1
            self._consecutive_failures += 1
            if value is not None:
                logger.warning("[Trial %4d] reward %r is not finite: treated as a failed trial", trial_id, value)
            value = self.config.reward_for_failure
            if self.status is ControllerStatus.STOPPED:
                logger.error(
                    "[Trial %4d] %d trials failed in a row: controller stopped", trial_id, self._consecutive_failures
                )
            if value is None:
                logger.info("[Trial %4d] failed: skipped", trial_id)
                return
            logger.info("[Trial %4d] failed: reward_for_failure %s", trial_id, value)
        else:
            self._consecutive_failures = 0
        self._num_rewards += 1
        logger.debug("[Trial %4d] reward %.6g", trial_id, value)
        self._feedback(trial_id, decisions, float(value))

    def recover(
        self,
        history: Sequence[tuple[Sequence[int], float | None]],
        *,
        pending: Sequence[Sequence[int]] = (),
    ) -> list[Proposal]:
        """Rebuilds the controller's state from stored trials (PyGlove ``DNAGenerator.recover``).

        Each finished trial is given as ``(decisions, reward)``, reward None for a failure, **in the order their
        feedback reached the controller**. An entry whose decisions equal a pending trial's (the oldest such, e.g.
        one restored by `load_state_dict`) completes that trial; any other entry is replayed as a new proposal
        (the random generator advances as if it had been proposed; it gets the next trial id) and then fed back.

        Two ways to resume a search, both exact:

        * **From the full history**: a fresh controller (same space, seed and config), then
          ``recover(all_finished_trials)``.
        * **From a checkpoint**: a fresh controller, ``load_state_dict(checkpoint)``, then
          ``recover(trials_finished_after_the_checkpoint)``.

        Either way, the next proposals are those of the uninterrupted run, provided every trial the run had
        proposed is in `history` or `pending`. Trials that were running when the run stopped and will be run again
        go in `pending` (in proposal order); they are registered (replayed if not already pending) and returned,
        so their feedback can be routed by the returned trial ids. A proposal that appears in neither is simply
        lost: the search continues correctly, but its random draws are not repeated.

        Args:
          history: finished trials as (decisions, reward or None), in feedback order.
          pending: decision sequences of trials still to be fed back, in proposal order.

        Returns:
          A `Proposal` for every entry of `pending`, in order.

        Raises:
          InvalidDecisionError: for a decision sequence that does not fit the space (its path names the entry).
          ValueError: for a malformed history entry or reward.
        """
        replayed = 0
        for i, item in enumerate(history):
            if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) != 2:
                raise ValueError(f"history[{i}]: expected a (decisions, reward) pair, got {item!r}")
            decisions = self._check_decisions(item[0], f"history[{i}]")
            tid = self._oldest_pending(decisions)
            if tid is None:
                tid = self._replay_one(decisions)
                replayed += 1
            self.feedback(tid, item[1])
        out = []
        for i, d in enumerate(pending):
            decisions = self._check_decisions(d, f"pending[{i}]")
            tid = self._oldest_pending(decisions, exclude={p.trial_id for p in out})
            if tid is None:
                tid = self._replay_one(decisions)
                replayed += 1
            out.append(Proposal(tid, decisions))
        logger.info(
            "%s recovered %d finished and %d pending trials (%d replayed as proposals)",
            type(self).__name__,
            len(history),
            len(out),
            replayed,
        )
        return out

    def state_dict(self) -> dict[str, Any]:
        """The controller's whole state as JSON-safe data (no pickle), with a ``version`` field.

        It holds the pending trials, so feedback for them still works after `load_state_dict`.
        """
        return {
            "version": STATE_VERSION,
            "controller": self.name,
            "num_choices": list(self.num_choices),
            "config": dataclasses.asdict(self.config),
            "seed": self.seed,
            "rng": rng_to_json(self._rng),
            "next_trial_id": self._next_trial_id,
            "pending": [[tid, list(d)] for tid, d in sorted(self._pending.items())],
            "num_rewards": self._num_rewards,
            "num_failures": self._num_failures,
            "consecutive_failures": self._consecutive_failures,
            "algorithm": self._state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a `state_dict`: the controller then continues exactly as the one that saved it.

        Args:
          state: a `state_dict` (possibly through JSON). It must come from the same controller type, with the same
            config and a space with the same ``num_choices``.

        Raises:
          ValueError: naming what differs (version, controller, space, config) or what is malformed.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: expected a dict from state_dict(), got {type(state).__name__}")
        missing = [
            k
            for k in ("version", "controller", "num_choices", "config", "rng", "next_trial_id", "pending", "algorithm")
            if k not in state
        ]
        if missing:
            raise ValueError(f"{where}: expected a dict from state_dict(), missing key(s) {missing}")
        version = state["version"]
        if version != STATE_VERSION and (isinstance(version, bool) or version not in OLD_STATE_VERSIONS):
            raise ValueError(
                f"{where}: expected state version {STATE_VERSION} (or an older one of {list(OLD_STATE_VERSIONS)}, "
                f"upgraded), got {version!r}"
            )
        if version != STATE_VERSION:
            state = self._upgrade_state(state)
        if state["controller"] != self.name:
            raise ValueError(f"{where}: expected the state of a {self.name!r} controller, got {state['controller']!r}")
        if list(state["num_choices"]) != list(self.num_choices):
            raise ValueError(
                f"{where}: the state is for another search space: expected num_choices {list(self.num_choices)}, "
                f"got {list(state['num_choices'])}"
            )
        mine = dataclasses.asdict(self.config)
        if dict(state["config"]) != mine:
            diff = {k: (mine.get(k), state["config"].get(k)) for k in set(mine) | set(state["config"])
                    if mine.get(k) != state["config"].get(k)}
            raise ValueError(
                f"{where}: the state was saved with another config; differing fields (expected, got): {diff}"
            )
        pending: dict[int, Decisions] = {}
        for i, entry in enumerate(state["pending"]):
            tid, decisions = entry
            pending[int(tid)] = self._check_decisions(decisions, f"state['pending'][{i}]")
        rng = rng_from_json(state["rng"])
        seed = state.get("seed")
        self._load_state_dict(state["algorithm"])
        self.seed = None if seed is None else int(seed)
        self._rng = rng
        self._next_trial_id = int(state["next_trial_id"])
        self._pending = pending
        self._num_rewards = int(state.get("num_rewards", 0))
        self._num_failures = int(state.get("num_failures", 0))
        self._consecutive_failures = int(state.get("consecutive_failures", 0))

    def _upgrade_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """An older version's state in today's layout (a state of another controller is left for the checks).

        The config fields an older state lacks were added since; they take this controller's values, so a search
        saved by an older version resumes with today's settings for them (it cannot continue as the older code
        would have: that code is gone). The algorithm's part goes through `_upgrade_algorithm_state`.
        """
        if state.get("controller") != self.name or not isinstance(state.get("config"), Mapping):
            return dict(state)
        mine = dataclasses.asdict(self.config)
        added = sorted(set(mine) - set(state["config"]))
        if added:
            logger.warning(
                "%s: a version-%s state: its config lacks %s, which take this controller's values %s",
                type(self).__name__, state["version"], added, {k: mine[k] for k in added},
            )
        return {
            **state,
            "version": STATE_VERSION,
            "config": {**{k: mine[k] for k in added}, **state["config"]},
            "algorithm": (self._upgrade_algorithm_state(state["algorithm"], self.config)
                          if isinstance(state["algorithm"], Mapping) else state["algorithm"]),
        }

    @classmethod
    def _upgrade_algorithm_state(cls, algorithm: Mapping[str, Any], config: ControllerConfig) -> dict[str, Any]:
        """A version-1 `_state_dict` in today's layout (the default: unchanged)."""
        return dict(algorithm)

    # ------------------------------------------------------------------------------------------- hooks
    def _setup(self) -> None:  # noqa: B027 - optional hook
        """Builds the algorithm's state (called once, at the end of ``__init__``)."""

    @abc.abstractmethod
    def _propose(self, n: int) -> list[tuple[Decisions, dict[str, Any]]]:
        """Returns `n` (decisions, extras) pairs. Must draw a fixed number of random numbers per proposal."""

    @abc.abstractmethod
    def _replay(self, decisions: Decisions) -> None:
        """Advances the state (the random generator above all) exactly as proposing `decisions` did."""

    @abc.abstractmethod
    def _feedback(self, trial_id: int, decisions: Decisions, reward: float) -> None:
        """Learns from one finite reward (failures already mapped to `reward_for_failure` or skipped)."""

    @abc.abstractmethod
    def _state_dict(self) -> dict[str, Any]:
        """The algorithm's state, JSON-safe."""

    @abc.abstractmethod
    def _load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores `_state_dict` output; validates it before changing anything."""

    # ------------------------------------------------------------------------------------------- helpers
    def _uniforms(self, n: int, k: int) -> np.ndarray:
        """`n` rows of `k` uniforms in [0, 1): the same stream whether drawn at once or row by row."""
        return self._rng.random((n, k))

    def _check_decisions(self, decisions: Any, where: str) -> Decisions:
        try:
            values = list(decisions)
        except TypeError:
            raise InvalidDecisionError(
                f"expected a sequence of integers, got {type(decisions).__name__}", where
            ) from None
        if len(values) != len(self.num_choices):
            word = "too short" if len(values) < len(self.num_choices) else "too long"
            raise InvalidDecisionError(
                f"decision sequence {word}: expected {len(self.num_choices)} decisions, got {len(values)}", where
            )
        for i, (v, n) in enumerate(zip(values, self.num_choices)):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v < n:
                raise InvalidDecisionError(
                    f"choice out of range at decision {i}: expected an integer in 0..{n - 1}, got {v!r}", where
                )
        return tuple(int(v) for v in values)

    def _oldest_pending(self, decisions: Decisions, exclude: set[int] | None = None) -> int | None:
        for tid in sorted(self._pending):
            if self._pending[tid] == decisions and not (exclude and tid in exclude):
                return tid
        return None

    def _replay_one(self, decisions: Decisions) -> int:
        self._replay(decisions)
        tid = self._next_trial_id
        self._next_trial_id += 1
        self._pending[tid] = decisions
        return tid


# ----------------------------------------------------------------------------------------------- JSON helpers
def rng_to_json(rng: np.random.Generator) -> dict[str, Any]:
    """A generator's exact state as JSON-safe data (its 128-bit integers as decimal strings)."""
    state = rng.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        raise ValueError(f"expected a PCG64 generator, got {state.get('bit_generator')!r}")
    return {
        "bit_generator": "PCG64",
        "state": str(state["state"]["state"]),
        "inc": str(state["state"]["inc"]),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def rng_from_json(d: Mapping[str, Any]) -> np.random.Generator:
    """Inverse of `rng_to_json`."""
    if not isinstance(d, Mapping) or d.get("bit_generator") != "PCG64":
        raise ValueError(f"expected a PCG64 generator state, got {d!r}")
    bit_generator = np.random.PCG64()
    bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": int(d["state"]), "inc": int(d["inc"])},
        "has_uint32": int(d["has_uint32"]),
        "uinteger": int(d["uinteger"]),
    }
    return np.random.Generator(bit_generator)


def array_to_json(a: np.ndarray) -> dict[str, Any]:
    """An array as JSON-safe data, bit-exact: dtype, shape and its raw bytes in base64.

    Not compressed: a trained PPO policy's float32 weights and Adam moments hardly shrink under zlib, and
    compressing them would cost the driver several times what the rest of `state_dict()` takes per checkpoint.
    `array_from_json` also reads the ``zlib_base64`` form of older checkpoints.
    """
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "base64": base64.b64encode(a.tobytes()).decode("ascii")}


def array_from_json(d: Mapping[str, Any]) -> np.ndarray:
    """Inverse of `array_to_json` (either form)."""
    try:
        if "base64" in d:
            raw = base64.b64decode(d["base64"], validate=True)
        else:
            raw = zlib.decompress(base64.b64decode(d["zlib_base64"], validate=True))
        return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()
    except (KeyError, TypeError, ValueError, zlib.error) as e:
        raise ValueError(f"expected an array from array_to_json, got a malformed one ({e})") from None
