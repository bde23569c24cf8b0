"""Proxy calibration: how far a preset's proxy can be trusted, measured by the tool itself.

A study trains a set of candidate architectures twice, at the proxy's fidelity (with intermediate evaluations at
the rungs: what early stopping sees) and at a reference fidelity (more steps, optionally other settings), and a
few of them again with other seeds. It reports:

- **fidelity**: Kendall's tau and Spearman's rho of each rung's AP against the reference AP, over all candidates
  and over the random ones alone (the hand-picked ones spread the ranking and flatter it), with bootstrap 90%
  intervals and p-values, and the earliest rung whose tau reaches the target (Vertex AI NAS's proxy-task search
  controller computes the same tau per training step; its guidance is to check it before any search);
- **variance**: per repeated candidate the mean, std and coefficient of variation of the AP over seeds (Vertex
  AI NAS's variance tool: CV <= 0.4), the pooled seed std, and the candidates' spread over it;
- **cost**: the trial-seconds each rung takes, so the cheapest good rung is the verdict.

A study is a stored search of kind 'calibration': its trials (with their learning curves) are in the results
database with fingerprints of their own (`nas.engine.fingerprint.fingerprint(..., study='calibration')`), so no search
reuses or ranks them, and ``spinenas calibrate --resume NAME`` continues it after any crash without repeating a
finished training. It runs on the same runners as a search.

A study of **variants** (``spinenas calibrate --reference-from STUDY --variant NAME:KEY=VALUE,...``) trains no
reference: it takes a stored study's candidates and reads that study's reference trainings from the same database
(checked to be of the reference config it copied), and trains each variant of the stored proxy (the stored proxy
config with the variant's overrides) on those candidates, with the repeats of each. It reports per variant and rung
the seconds per trial, tau against the stored references with its interval and the seed CV, and names the cheapest
variant and rung whose tau reaches the target. Its trials are marked per variant
(``study='calibration:variant:NAME'``).

Candidates, in order: SpineNet-49 (Model Garden's), a deliberately poor architecture (SpineNet-49 with every
intermediate block at level 7), a scale-decreased one (SpineNet-49's blocks in ResNet order: levels rising along
a chain), then random architectures of the preset's space drawn from the study's seed; or the architectures of a
file, or the best of a search. The plan trains each candidate at the proxy and at the reference fidelity in turn
(so a partial study already has pairs), then the repeats.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from nas.calibration.stats import (
    CV_TARGET,
    earliest_rung,
    pooled_std,
    rank_agreement,
    seed_noise,
)
from nas.config.schema import NasConfig
from nas.config.codec import (
    MAX_STORED_YAML_BYTES,
    ConfigError,
    apply_overrides,
    from_dict,
    load_yaml,
    resolve,
    to_dict,
)
from nas.engine.fingerprint import describe, fingerprint
from nas.engine.driver import trial_spec
from nas.engine.lease import LeaseLostError
from nas.engine.trial_loop import InFlight, TrialLoop
from proxy_task.result import ProxyResult
from results_db.status import FINISHED_STATUSES, SearchStatus, TrialStatus
from search_space import SPINENET_49, ArchSpec, SearchSpace

logger = logging.getLogger(__name__)

KIND = "calibration"
PROXY, REFERENCE = "proxy", "reference"
STUDY_MARK = "calibration"
#: Seeds of repeat r of candidate j: the proxy's seed + REPEAT_SEED_STRIDE * r + j.
REPEAT_SEED_STRIDE = 1000
#: A variant's name: it marks its trials' fingerprints and names it in `calibration show`.
VARIANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Keys a variant may not set: how the study runs (for all its variants at once: --runner, --workers, ...) or
# sections a study does not use, not what a trial computes.
_NOT_VARIANT_KEYS = ("runner.", "controller.", "scheduler.", "search.workers=", "search.cpus_per_trial=",
                     "search.gpus_per_trial=")
# Where one override of `--variant NAME:K=V,K=V` ends: a comma before the next dotted key and its '=' (a comma
# inside a value, as in proxy.eval_at_steps=[100,200], stays in it).
_NEXT_OVERRIDE = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\s*=)")


class CalibrationError(ValueError):
    """A study that cannot be set up as asked (what, expected, got)."""


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What a calibration study measures (stored with it).

    Attributes:
      preset: the preset (or YAML file) whose proxy is calibrated.
      archs: candidates in all (at least 3).
      repeats: trainings at the proxy's fidelity of each variance candidate, with different seeds (1: none).
      variance_archs: how many candidates are repeated.
      rungs: steps of the proxy run whose AP is compared with the reference (increasing; the proxy's last step is
        always one).
      reference_steps: training steps of the reference fidelity.
      reference_set: `proxy.KEY=VALUE` overrides of the reference fidelity (e.g. a larger image size).
      target_tau: the Kendall tau a rung must reach to be a good proxy.
      seed: draws the random candidates.
      bootstrap: bootstrap resamples of the intervals.
      source: where the candidates came from ('default', a file, 'search NAME top K').
    """

    preset: str
    archs: int = 12
    repeats: int = 3
    variance_archs: int = 3
    rungs: tuple[int, ...] = ()
    reference_steps: int = 0
    reference_set: tuple[str, ...] = ()
    target_tau: float = 0.6
    seed: int = 0
    bootstrap: int = 2000
    source: str = "default"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One architecture of a study.

    Attributes:
      name: 'spinenet-49', 'poor-all-L7', 'scale-decreased', 'random-3', or a file's / search's label.
      kind: 'spinenet-49', 'poor', 'scale-decreased', 'random' or 'given'.
      arch: the architecture.
    """

    name: str
    kind: str
    arch: ArchSpec


@dataclasses.dataclass(frozen=True)
class PlannedTrial:
    """One training of a study: which candidate, at which fidelity, which repeat, with which seed; in a study of
    variants, of which variant (its fidelity is the proxy's)."""

    index: int
    candidate: int
    fidelity: str
    repeat: int
    seed: int
    variant: str = ""


@dataclasses.dataclass(frozen=True)
class Variant:
    """A variant of a study's proxy: its config with some keys overridden.

    Attributes:
      name: unique in the study (`VARIANT_NAME`); it marks the variant's trials.
      overrides: the `KEY=VALUE` overrides as given.
      config: the resolved config its trials run with.
    """

    name: str
    overrides: tuple[str, ...]
    config: NasConfig

    @property
    def rungs(self) -> tuple[int, ...]:
        """Its evaluations compared with the reference: its eval_at_steps and its last step."""
        return (*self.config.proxy.eval_at_steps, self.config.proxy.train_steps)


# A pooled seed std below this is no seed noise (APs agree to float residue): no spread/noise ratio is given.
NO_NOISE = 1e-9


def poor_arch() -> ArchSpec:
    """SpineNet-49 with every intermediate block at level 7: the outputs see almost no spatial detail."""
    base = SPINENET_49.canonical()
    blocks = tuple(b if b.is_output else dataclasses.replace(b, level=7) for b in base.blocks)
    return ArchSpec(blocks=blocks, stem=base.stem)


def scale_decreased_arch() -> ArchSpec:
    """SpineNet-49's blocks in ResNet order: sorted by level (intermediate before output at a level), each block
    fed by the two before it, so resolution only falls along the chain (the scale-decreased baseline of the paper's
    figure 1)."""
    base = SPINENET_49.canonical()
    ordered = sorted(base.blocks, key=lambda b: (b.level, b.is_output))
    blocks = tuple(dataclasses.replace(b, input_offsets=(i, i + 1)) for i, b in enumerate(ordered))
    return ArchSpec(blocks=blocks, stem=base.stem)


def default_candidates(family: str, window: int | None, n: int, seed: int) -> list[Candidate]:
    """SpineNet-49, the poor and the scale-decreased architecture, then random ones of the space: `n` in all."""
    import numpy as np

    fixed = [Candidate("spinenet-49", "spinenet-49", SPINENET_49.canonical()),
             Candidate("poor-all-L7", "poor", poor_arch()),
             Candidate("scale-decreased", "scale-decreased", scale_decreased_arch())]
    out = fixed[:n]
    space = SearchSpace(family, window=window)
    rng = np.random.default_rng([seed, 0xCA1])
    keys = {c.arch.key for c in out}
    while len(out) < n:
        arch = space.decode(space.random(rng)).canonical()
        if arch.key not in keys:
            keys.add(arch.key)
            out.append(Candidate(f"random-{len(out) - len(fixed)}", "random", arch))
    return out


@dataclasses.dataclass(frozen=True)
class Study:
    """A study's whole definition: settings, candidates, both fidelities' configs and the plan (what is stored).

    Attributes:
      settings: the resolved settings (rungs and reference steps filled in).
      candidates: the architectures.
      proxy: the proxy fidelity's config (its eval_at_steps are the rungs before the last step).
      reference: the reference fidelity's config.
      variants: in a study of variants, the variants of `proxy` it trains (and no reference: those of the study
        `reference_from` are read).
      reference_from: in a study of variants, the stored study whose candidates and reference trainings it uses.
    """

    settings: StudySettings
    candidates: tuple[Candidate, ...]
    proxy: NasConfig
    reference: NasConfig
    variants: tuple[Variant, ...] = ()
    reference_from: str = ""

    @property
    def plan(self) -> tuple[PlannedTrial, ...]:
        """Every training, in the order they run (each candidate's pair first, then the repeats; in a study of
        variants, variant by variant: its candidates, then its repeats)."""
        s, base = self.settings, self.proxy.proxy.seed
        out: list[PlannedTrial] = []
        for v in self.variants:
            seed = v.config.proxy.seed  # the seeds of the stored proxy trials, unless the variant sets its own
            for j in range(len(self.candidates)):
                out.append(PlannedTrial(len(out), j, PROXY, 0, seed + j, v.name))
            for r in range(1, s.repeats):
                for j in self.variance_candidates:
                    out.append(PlannedTrial(len(out), j, PROXY, r, seed + REPEAT_SEED_STRIDE * r + j, v.name))
        if self.variants:
            return tuple(out)
        for j in range(len(self.candidates)):
            out.append(PlannedTrial(len(out), j, PROXY, 0, base + j))
            out.append(PlannedTrial(len(out), j, REFERENCE, 0, base + j))
        for r in range(1, s.repeats):
            for j in self.variance_candidates:
                out.append(PlannedTrial(len(out), j, PROXY, r, base + REPEAT_SEED_STRIDE * r + j))
        return tuple(out)

    @property
    def variance_candidates(self) -> tuple[int, ...]:
        """The repeated candidates: SpineNet-49 and the random ones first (the poor one's AP is near zero, where a
        coefficient of variation says nothing), then the others."""
        order = [j for j, c in enumerate(self.candidates) if c.kind in ("spinenet-49", "random", "given")]
        order += [j for j in range(len(self.candidates)) if j not in order]
        return tuple(order[: self.settings.variance_archs])

    def config_of(self, fidelity: str) -> NasConfig:
        """The config trials of a fidelity run with."""
        return self.proxy if fidelity == PROXY else self.reference

    def fingerprint(self, fidelity: str) -> str:
        """The result fingerprint of a fidelity's trials (marked: no search mixes them with its own)."""
        return fingerprint(self.config_of(fidelity), study=f"{STUDY_MARK}:{fidelity}")

    def variant(self, name: str) -> Variant:
        """The variant called `name` (KeyError if there is none)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"study has no variant {name!r}; it has {', '.join(v.name for v in self.variants) or 'none'}")

    def trial_config(self, p: PlannedTrial) -> NasConfig:
        """The config a planned training runs with (its fidelity's, or its variant's)."""
        return self.variant(p.variant).config if p.variant else self.config_of(p.fidelity)

    def trial_fingerprint(self, p: PlannedTrial) -> str:
        """The result fingerprint of a planned training (a variant's trials are marked with its name)."""
        if p.variant:
            return fingerprint(self.variant(p.variant).config, study=f"{STUDY_MARK}:variant:{p.variant}")
        return self.fingerprint(p.fidelity)

    @property
    def base_fingerprint(self) -> str:
        """The fingerprint a search with this proxy has: how `spinenas search` finds its calibration."""
        return fingerprint(self.proxy)

    def to_yaml(self) -> str:
        """The stored form (the study row's config)."""
        doc = {
            "calibration": {
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.settings).items()},
                "base_fingerprint": self.base_fingerprint,
                "candidates": [{"name": c.name, "kind": c.kind, "key": c.arch.key, "spec": c.arch.to_dict()}
                               for c in self.candidates],
            },
            "proxy_config": to_dict(self.proxy),
            "reference_config": to_dict(self.reference),
        }
        if self.variants:  # a study without them is stored as before
            doc["reference_from"] = self.reference_from
            doc["variants"] = [{"name": v.name, "set": list(v.overrides), "config": to_dict(v.config)}
                               for v in self.variants]
        return yaml.safe_dump(doc, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Study:
        """Inverse of `to_yaml`.

        Raises:
          CalibrationError: a text that is not a stored study.
        """
        try:
            doc = load_yaml(text, what="the stored study", max_bytes=MAX_STORED_YAML_BYTES) or {}
            c = dict(doc["calibration"])
            candidates = tuple(Candidate(x["name"], x["kind"], ArchSpec.from_dict(x["spec"]))
                               for x in c.pop("candidates"))
            c.pop("base_fingerprint", None)
            settings = StudySettings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in c.items()})
            proxy = from_dict(NasConfig, doc["proxy_config"])
            reference = from_dict(NasConfig, doc["reference_config"])
            variants = tuple(Variant(str(v["name"]), tuple(str(o) for o in v["set"]), from_dict(NasConfig, v["config"]))
                             for v in doc.get("variants") or ())
            reference_from = str(doc["reference_from"]) if variants else ""
        except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:
            raise CalibrationError(f"not a stored calibration study: {e}") from None
        return cls(settings, candidates, proxy, reference, variants, reference_from)


def build_study(settings: StudySettings, cfg: NasConfig, candidates: Sequence[Candidate] | None = None) -> Study:
    """Resolves a study: the rungs, the reference, the candidates; checks everything that can be wrong.

    Args:
      settings: as given (rungs () and reference_steps 0 mean the defaults).
      cfg: the preset's config (its proxy is the one calibrated).
      candidates: the architectures, or None for `default_candidates`.

    Raises:
      CalibrationError: a setting out of range, a rung beyond the proxy's steps, a reference equal to the proxy.
    """
    s = settings
    steps = cfg.proxy.train_steps
    if s.archs < 3:
        raise CalibrationError(f"--archs must be at least 3 (a ranking of fewer says nothing), got {s.archs}")
    _check_counts(s)
    rungs = tuple(s.rungs) or (*cfg.proxy.eval_at_steps, steps)
    if any(not isinstance(r, int) or r < 1 for r in rungs) or list(rungs) != sorted(set(rungs)):
        raise CalibrationError(f"--rungs must be increasing steps >= 1, got {list(rungs)}")
    if rungs[-1] > steps:
        raise CalibrationError(f"--rungs: step {rungs[-1]} is beyond the proxy's last step ({steps}); a rung is an "
                               "evaluation of the proxy's own run")
    if rungs[-1] != steps:
        rungs = (*rungs, steps)
    reference_steps = s.reference_steps or 4 * steps
    if reference_steps < 1:
        raise CalibrationError(f"--reference-steps must be at least 1, got {reference_steps}")
    # The preset's timeout is sized for its proxy: a longer reference gets it in proportion to its steps.
    timeout = cfg.search.trial_timeout_s * max(1.0, reference_steps / steps)
    try:
        proxy = resolve(NasConfig, cfg, [f"proxy.eval_at_steps={list(rungs[:-1])}"])
        reference = resolve(NasConfig, proxy, ["proxy.eval_at_steps=[]", f"proxy.train_steps={reference_steps}",
                                               f"search.trial_timeout_s={timeout}", *s.reference_set])
    except ConfigError as e:
        raise CalibrationError(f"the reference fidelity: {e}") from None
    bad = [o for o in s.reference_set if not o.startswith("proxy.")]
    if bad:
        raise CalibrationError(f"--reference-set changes the proxy only (proxy.KEY=VALUE), got {bad[0]!r}")
    if fingerprint(reference) == fingerprint(proxy):
        raise CalibrationError("the reference fidelity equals the proxy's (same steps and settings): give "
                               "--reference-steps above the proxy's steps, or --reference-set proxy.KEY=VALUE")
    if candidates is None:
        candidates = default_candidates(cfg.search.family, cfg.search.window or None, s.archs, s.seed)
    elif len(candidates) < 3:
        raise CalibrationError(f"a study needs at least 3 candidates, got {len(candidates)}")
    keys = [c.arch.key for c in candidates]
    if len(set(keys)) != len(keys):
        raise CalibrationError("the candidates must be different architectures (two have the same key)")
    settings = dataclasses.replace(s, archs=len(candidates), rungs=tuple(rungs), reference_steps=reference_steps,
                                   variance_archs=min(s.variance_archs, len(candidates)))
    return Study(settings, tuple(candidates), proxy, reference)


def _check_counts(s: StudySettings) -> None:
    if s.repeats < 1:
        raise CalibrationError(f"--repeats must be at least 1, got {s.repeats}")
    if not 0 <= s.variance_archs <= s.archs:
        raise CalibrationError(f"--variance-archs must be between 0 and --archs ({s.archs}), got {s.variance_archs}")
    if not -1 <= s.target_tau <= 1:
        raise CalibrationError(f"--target-tau must be in [-1, 1], got {s.target_tau}")
    if s.bootstrap < 100:
        raise CalibrationError(f"bootstrap must be at least 100 resamples, got {s.bootstrap}")


def parse_variant(text: str) -> tuple[str, tuple[str, ...]]:
    """``'NAME:KEY=VALUE[,KEY=VALUE...]'`` (``'NAME'`` alone: the proxy unchanged) -> (name, overrides).

    Example::

      parse_variant("short:proxy.train_steps=400,proxy.eval_at_steps=[100,200]")
      # ('short', ('proxy.train_steps=400', 'proxy.eval_at_steps=[100,200]'))

    Raises:
      CalibrationError: a bad name, or an override that is not KEY=VALUE.
    """
    name, _, rest = text.partition(":")
    if not VARIANT_NAME.fullmatch(name) or name in (PROXY, REFERENCE):
        raise CalibrationError(f"--variant expects NAME:KEY=VALUE[,KEY=VALUE...] with a NAME of at most 64 letters, "
                               f"digits, '_' or '-' (not {PROXY!r} or {REFERENCE!r}), got {text[:80]!r}")
    overrides = tuple(o.strip() for o in _NEXT_OVERRIDE.split(rest)) if rest.strip() else ()
    for o in overrides:
        if "=" not in o or not o.split("=", 1)[0].strip():
            raise CalibrationError(f"--variant {name}: expected KEY=VALUE such as proxy.train_steps=400, got {o[:80]!r}")
        if any(o.startswith(k) for k in _NOT_VARIANT_KEYS):
            raise CalibrationError(f"--variant {name}: {o.split('=', 1)[0]} is how the study runs, not what a trial "
                                   "computes: give --runner, --workers, --cpus-per-trial or --gpus-per-trial for the "
                                   "whole study")
    return name, overrides


def _variant_config(base: NasConfig, name: str, overrides: Sequence[str]) -> NasConfig:
    """`base` with a variant's overrides. Its eval_at_steps not set, it keeps those of `base` before its last step;
    its timeout not set, it gets `base`'s in proportion to its steps (as the reference does)."""
    d = apply_overrides(to_dict(base), overrides, NasConfig)
    keys = {o.split("=", 1)[0].strip() for o in overrides}
    proxy, steps = d["proxy"], d["proxy"]["train_steps"]
    if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1:
        if "proxy.eval_at_steps" not in keys:
            proxy["eval_at_steps"] = [x for x in proxy["eval_at_steps"] if x < steps]
        if "search.trial_timeout_s" not in keys:
            d["search"]["trial_timeout_s"] = base.search.trial_timeout_s * max(1.0, steps / base.proxy.train_steps)
    return from_dict(NasConfig, d)


def build_variant_study(source: Study, source_name: str, variants: Sequence[tuple[str, Sequence[str]]], *,
                        repeats: int | None = None, variance_archs: int | None = None,
                        target_tau: float | None = None) -> Study:
    """A study of variants of a stored study's proxy, against that study's reference trainings.

    Args:
      source: the stored study (one with reference trainings: not itself a study of variants).
      source_name: its name in the store.
      variants: (name, overrides) of each variant (`parse_variant`); the overrides apply to `source.proxy`.
      repeats, variance_archs, target_tau: the new study's (per variant); None: the source's.

    Raises:
      CalibrationError: no variant, a name given twice, a bad key or value, a variant equal to the reference, a
        source that is a study of variants.
    """
    if source.variants:
        raise CalibrationError(f"study {source_name!r} is a study of variants (it trained no reference): give its "
                               f"reference study, --reference-from {source.reference_from}")
    if not variants:
        raise CalibrationError("--reference-from needs at least one --variant NAME:KEY=VALUE[,KEY=VALUE...]")
    names = [n for n, _ in variants]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CalibrationError(f"--variant names must differ: {twice[0]!r} is given {names.count(twice[0])} times")
    s = source.settings
    settings = dataclasses.replace(
        s, repeats=s.repeats if repeats is None else repeats,
        variance_archs=s.variance_archs if variance_archs is None else variance_archs,
        target_tau=s.target_tau if target_tau is None else target_tau)  # fmt: skip
    _check_counts(settings)
    built = []
    reference = fingerprint(source.reference)
    for name, overrides in variants:
        try:
            cfg = _variant_config(source.proxy, name, overrides)
        except ConfigError as e:  # the codec's message names the override as --set's: it is the variant's here
            raise CalibrationError(f"--variant {name}: {str(e).removeprefix('--set ')}") from None
        if fingerprint(cfg) == reference:
            raise CalibrationError(f"--variant {name} trains as the reference does (same steps and settings): it "
                                   "would rank like it by construction")
        built.append(Variant(name, tuple(overrides), cfg))
    return Study(settings, source.candidates, source.proxy, source.reference, tuple(built), source_name)


def check_reference(study: Study, source: Study) -> None:
    """A study of variants' reference study is still the one it was made against: the same candidates, and a
    reference config of the same fingerprint (today's, of both stored configs).

    Raises:
      CalibrationError: it is not.
    """
    if source.variants:
        raise CalibrationError(f"its reference study {study.reference_from!r} is a study of variants (no reference "
                               "trainings)")
    if [c.arch.key for c in source.candidates] != [c.arch.key for c in study.candidates]:
        raise CalibrationError(f"its reference study {study.reference_from!r} has other candidates than it was made "
                               "with")
    if fingerprint(source.reference) != fingerprint(study.reference):
        raise CalibrationError(f"the reference trainings of study {study.reference_from!r} are of another config "
                               f"than the one this study was made against ({describe(source.reference)}, expected "
                               f"{describe(study.reference)})")


# --------------------------------------------------------------------------------------------------- running
@dataclasses.dataclass
class StudyOutcome:
    """What a run of a study did."""

    name: str
    done: int
    total: int
    failed: int
    wall_s: float
    interrupted: bool = False


class CalibrationStudy(TrialLoop):
    """Runs a study's plan on a runner, storing every training with its curve; resumable at any point.

    Args:
      study: the study (new, or read back from the store with `Study.from_yaml` to resume).
      name: the study's name in the store.
      store: an open `results_db.ResultStore`.
      run_dir: where TensorBoard curves and the log go.
      resume: continue the stored study `name`.
      retry_failed: with `resume`, run its failed trainings again (a fault that was not the architecture's: a
        crashed worker, a timeout too short, a full disk).
      view, runner, tensorboard: as `TrialLoop`.
    """

    RESUME = "spinenas calibrate --resume {name}"

    def __init__(self, study: Study, *, name: str, store: Any, run_dir: str, resume: bool = False,
                 retry_failed: bool = False, view: Any = None, runner: Any = None, tensorboard: bool = True) -> None:
        import os

        cfg = study.proxy
        super().__init__(cfg, name=name, store=store, run_dir=run_dir,
                         spec=trial_spec(cfg, log_path=os.path.join(run_dir, "search.log")), view=view,
                         runner=runner, tensorboard=tensorboard)
        self.study = study
        self.resume = resume
        self.retry_failed = retry_failed
        self.retried = 0
        log = os.path.join(run_dir, "search.log")
        self._specs = {PROXY: self.spec, REFERENCE: trial_spec(study.reference, log_path=log),
                       **{v.name: trial_spec(v.config, log_path=log) for v in study.variants}}
        self._todo: list[InFlight] = []
        self._step_s: list[tuple[float, int]] = []  # (seconds, steps) of the trainings this run finished
        self.done = 0
        self.failed = 0
        self._t0 = time.time()

    def prepare(self) -> None:
        """Creates the study and its planned trials, or finds what a resumed one has left (no runner yet)."""
        from results_db.records import NewTrial

        study, plan = self.study, self.study.plan
        if self.resume:
            self.store.set_search_status(self.name, SearchStatus.RUNNING)
            if self.retry_failed:
                self.retried = len(self.store.retry_failed(self.name))
        else:
            self.store.create_search(self.name, config=study.to_yaml(), seed=study.settings.seed, controller="-",
                                     family=self.cfg.search.family, fingerprint=study.trial_fingerprint(plan[0]),
                                     kind=KIND)
            keys = self.store.register_archs([c.arch for c in study.candidates], family=self.cfg.search.family)
            for p in plan:  # one by one: indices follow the plan, fingerprints differ by fidelity and variant
                self.store.add_trials(self.name, [NewTrial(keys[p.candidate], ())],
                                      fingerprint=study.trial_fingerprint(p))
        trials = {t.index: t for t in self.store.trials(self.name)}
        for p in plan:
            t = trials[p.index]
            if t.status in FINISHED_STATUSES:
                self.done += 1
                self.failed += t.status == TrialStatus.FAILED
                continue
            c = study.candidates[p.candidate]
            cfg = study.trial_config(p)
            own = p.variant or p.fidelity
            self._todo.append(InFlight(t.id, p.index, c.arch.key, c.arch, p.seed, cfg.proxy.train_steps,
                                       spec=self._specs[own] if own != PROXY else None,
                                       fingerprint=study.trial_fingerprint(p), timeout_s=cfg.search.trial_timeout_s))
        if self.resume:
            again = f" ({self.retried} failed ones again)" if self.retried else ""
            self.view.line(f"resuming calibration {self.name!r}: {self.done} of {len(plan)} trainings done, "
                           f"{len(self._todo)} to run{again}")

    def run(self) -> StudyOutcome:
        """Runs what is left of the plan (Ctrl-C stops cleanly; resume later)."""
        interrupted = False
        try:
            while self._todo or self.inflight:
                while self._todo and len(self.inflight) < self.cfg.search.workers:
                    self._submit(self._todo.pop(0))
                self._turn()
        except LeaseLostError:
            raise  # fenced out: no write more; the trials stop as the runner closes; the CLI says so in one line
        except KeyboardInterrupt:
            interrupted = True
            self.view.line(f"interrupted: run '{self.RESUME.format(name=self.name)}' to continue")
            self.store.set_search_status(self.name, SearchStatus.STOPPED)
        else:
            self.store.set_search_status(self.name, SearchStatus.COMPLETED)
        finally:
            self._close()
        return StudyOutcome(self.name, self.done, len(self.study.plan), self.failed, time.time() - self._t0,
                            interrupted)

    def _finish(self, item: InFlight, result: ProxyResult, host: str | None) -> None:
        ap = result.metrics.get("ap")
        ok = result.error is None and ap is not None and math.isfinite(ap)
        status = TrialStatus.COMPLETED if ok else TrialStatus.FAILED
        error = result.error or (None if ok else f"no usable AP (ap={ap})")
        metrics = {k: v for k, v in result.metrics.items() if v is None or math.isfinite(v)}
        self.store.finish_trial(item.trial_id, status=status, reward=float(ap) if ok else None, metrics=metrics,
                                error=error, wall_s=result.wall_s, flops=result.flops, params=result.params,
                                host=host, precision=result.precision, reports=self._take_reports(item))
        self.done += 1
        self.failed += not ok
        if ok and result.wall_s:
            self._step_s.append((result.wall_s, item.total_steps))
        p = self.study.plan[item.index]
        c = self.study.candidates[p.candidate]
        # TensorBoard's HParams tab: which training this was (candidate, fidelity or variant, repeat, seed, steps).
        self._write_session(item, str(status), reward=float(ap) if ok else None, ap=float(ap) if ok else None,
                            step=item.total_steps, hparams={"candidate": c.name, "fidelity": p.variant or p.fidelity,
                                                            "repeat": p.repeat, "seed": p.seed,
                                                            "steps": item.total_steps})
        what = f"AP {ap:.4f}" if ok else f"FAILED ({error})"
        self.view.line(f"[{self.done}/{len(self.study.plan)}] {c.name} {p.variant or p.fidelity}"
                       f"{f' repeat {p.repeat}' if p.repeat else ''} ({item.total_steps} steps, seed {p.seed}) "
                       f"{what} {result.wall_s:.0f} s", status=self._status_line())

    def _status_line(self) -> str:
        from nas.cli.console import duration

        line = f"done {self.done} of {len(self.study.plan)}, failed {self.failed}, running {len(self.inflight)}"
        if self._step_s:
            # Trainings differ in length (the reference is several times the proxy): what is left, in steps, at
            # the pace of the trainings this run finished (fixed costs included).
            steps = sum(i.total_steps for i in self._todo)
            steps += sum(i.total_steps - (i.progress.step if i.progress else 0) for i in self.inflight.values())
            per_step = sum(s for s, _ in self._step_s) / sum(n for _, n in self._step_s)
            line += f" | about {duration(steps * per_step / max(1, self.cfg.search.workers))} left"
        return line


# --------------------------------------------------------------------------------------------------- analysis
class _Trainings:
    """A study's stored trainings by plan index: each one's AP and seconds at a step (None where not finished)."""

    def __init__(self, study: Study, trials: Sequence[Any], reports: Mapping[int, Sequence[Any]]) -> None:
        self.study = study
        self.plan = study.plan
        self.by_index = {t.index: t for t in trials}
        self.reports = reports

    def _completed(self, index: int) -> Any:
        t = self.by_index.get(index)
        return t if t is not None and t.status == TrialStatus.COMPLETED else None

    def _last_step(self, index: int) -> int:
        return self.study.trial_config(self.plan[index]).proxy.train_steps

    def ap(self, index: int, step: int | None = None) -> float | None:
        """The AP of training `index` at `step` (None: at its end)."""
        t = self._completed(index)
        if t is None:
            return None
        if step is None or step == self._last_step(index):
            return t.metrics.get("ap")
        for r in self.reports.get(t.id, ()):
            if r.step == step and r.metrics.get("ap") is not None:
                return float(r.metrics["ap"])
        return None

    def seconds(self, index: int, step: int) -> float | None:
        """The seconds training `index` took to `step` (its whole wall time at its last step)."""
        t = self._completed(index)
        if t is None:
            return None
        if step == self._last_step(index):
            return t.wall_s
        for r in self.reports.get(t.id, ()):
            if r.step != step:
                continue
            if r.metrics.get("elapsed_s") is not None:  # the worker's clock, as the trial's wall_s
                return float(r.metrics["elapsed_s"])
            if r.created_at is not None and t.started_at is not None:  # reports without it (older trials)
                return (r.created_at - t.started_at).total_seconds()
        return None


def analyze(study: Study, trials: Sequence[Any], reports: Mapping[int, Sequence[Any]],
            reference: tuple[Study, Sequence[Any]] | None = None) -> dict[str, Any]:
    """The study's figures from its stored trials and their curves (plain JSON; partial studies too).

    Args:
      study: the study.
      trials: its `TrialRecord`s (index = plan index).
      reports: trial id -> its `TrialReport`s.
      reference: for a study of variants, its reference study and that study's `TrialRecord`s (`read_reference`).

    Raises:
      CalibrationError: a study of variants without its reference study.
    """
    if study.variants:
        if reference is None:
            raise CalibrationError("a study of variants is analysed against its reference study's trainings")
        return _analyze_variants(study, trials, reports, *reference)
    s = study.settings
    got = _Trainings(study, trials, reports)
    plan = study.plan
    first = {(p.candidate, p.fidelity): p.index for p in plan if p.repeat == 0}
    candidates = [{
            "name": c.name, "kind": c.kind, "key": c.arch.key,
            "proxy_ap": {str(step): got.ap(first[(j, PROXY)], step) for step in s.rungs},
            "reference_ap": got.ap(first[(j, REFERENCE)]),
        } for j, c in enumerate(study.candidates)]  # fmt: skip
    rungs = _rung_rows(study, got, first, candidates)
    refs = [got._completed(first[(j, REFERENCE)]) for j in range(len(study.candidates))]
    ref_costs = [t.wall_s for t in refs if t is not None]
    variance = _seed_noise(study, got, None)
    done = sum(1 for t in trials if t.status in FINISHED_STATUSES)
    best = earliest_rung([(r["step"], _agreement(r["all"])) for r in rungs], s.target_tau)
    return {
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()},
        "trainings": {"done": done, "total": len(plan), "failed": sum(t.status == TrialStatus.FAILED for t in trials)},
        "candidates": candidates,
        "rungs": rungs,
        "reference": {"steps": s.reference_steps, "overrides": list(s.reference_set),
                      "seconds_per_trial": sum(ref_costs) / len(ref_costs) if ref_costs else None},
        "variance": _variance_figures(variance, [c["proxy_ap"][str(s.rungs[-1])] for c in candidates],
                                      [c.name for c in study.candidates]),
        "verdict": _verdict(rungs, best, s.target_tau, done, len(plan)),
    }


def _rung_rows(study: Study, got: _Trainings, first: Mapping[tuple[int, str], int],
               candidates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per rung: the seconds per trial to it, and the rank agreement with the reference (all, random ones)."""
    s = study.settings
    rows = []
    for step in s.rungs:
        row: dict[str, Any] = {"step": step}
        costs = [got.seconds(first[(j, PROXY)], step) for j in range(len(study.candidates))]
        costs = [x for x in costs if x is not None]
        row["seconds_per_trial"] = sum(costs) / len(costs) if costs else None
        for subset, members in (("all", range(len(study.candidates))),
                                ("random", [j for j, c in enumerate(study.candidates) if c.kind == "random"])):
            pairs = [(candidates[j]["proxy_ap"][str(step)], candidates[j]["reference_ap"]) for j in members]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            row[subset] = rank_agreement([x for x, _ in pairs], [y for _, y in pairs], samples=s.bootstrap,
                                         seed=s.seed).to_dict()
        rows.append(row)
    return rows


def _seed_noise(study: Study, got: _Trainings, step: int | None) -> list[tuple[int, Any]]:
    """(candidate, `SeedNoise`) of each repeated candidate with an AP, at `step` (None: the last)."""
    out = []
    for j in study.variance_candidates:
        aps = [got.ap(p.index, step) for p in study.plan if p.candidate == j and p.fidelity == PROXY]
        aps = [a for a in aps if a is not None]
        if aps:
            out.append((j, seed_noise(aps)))
    return out


def _variance_figures(variance: Sequence[tuple[int, Any]], finals: Sequence[float | None],
                      names: Sequence[str]) -> dict[str, Any]:
    pooled = pooled_std([n for _, n in variance])
    finals = [x for x in finals if x is not None]
    spread = max(finals) - min(finals) if len(finals) >= 2 else None
    cvs = [n.cv for _, n in variance]
    return {
        "candidates": [{"name": names[j], **n.to_dict()} for j, n in variance],
        "pooled_std": pooled,
        "spread": spread,
        # None also when the seeds agree (a pooled std that is float residue, e.g. the noiseless surrogate).
        "spread_over_noise": spread / pooled if spread is not None and pooled and pooled > NO_NOISE else None,
        "cv_target": CV_TARGET,
        "cv_ok": None if not variance or any(cv is None for cv in cvs) else all(cv <= CV_TARGET for cv in cvs),
    }


def _analyze_variants(study: Study, trials: Sequence[Any], reports: Mapping[int, Sequence[Any]], source: Study,
                      source_trials: Sequence[Any]) -> dict[str, Any]:
    """A study of variants: each variant analysed as a study of its own whose reference trainings are the source's
    (its trials renumbered into that study's plan), plus the seed CV at each rung; the cheapest good variant."""
    s = study.settings
    by_index = {t.index: t for t in trials}
    src = {t.index: t for t in source_trials}
    src_ref = {p.candidate: p.index for p in source.plan if p.fidelity == REFERENCE and p.repeat == 0}
    variants = []
    for v in study.variants:
        view = Study(dataclasses.replace(s, rungs=v.rungs), study.candidates, v.config, study.reference)
        mine = {(p.candidate, p.repeat): p.index for p in study.plan if p.variant == v.name}
        remapped = []
        for p in view.plan:
            t = by_index.get(mine[(p.candidate, p.repeat)]) if p.fidelity == PROXY else src.get(src_ref[p.candidate])
            if t is not None:
                remapped.append(dataclasses.replace(t, index=p.index))
        d = analyze(view, remapped, reports)
        got = _Trainings(view, remapped, reports)
        for row in d["rungs"]:  # the largest CV of the repeated candidates at the rung
            cvs = [n.cv for _, n in _seed_noise(view, got, row["step"]) if n.cv is not None]
            row["cv_max"] = max(cvs) if cvs else None
        own = [by_index[i] for i in mine.values() if i in by_index]
        variants.append({"name": v.name, "overrides": list(v.overrides), "train_steps": v.config.proxy.train_steps,
                         "trainings": _counts(own, len(mine)), "rungs": d["rungs"], "candidates": d["candidates"],
                         "variance": d["variance"], "verdict": d["verdict"]})
    refs = [src.get(src_ref[j]) for j in range(len(study.candidates))]
    ref_done = [t for t in refs if t is not None and t.status == TrialStatus.COMPLETED]
    trainings = _counts(trials, len(study.plan))
    return {
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()},
        "trainings": trainings,
        "proxy_steps": study.proxy.proxy.train_steps,
        "reference": {"study": study.reference_from, "steps": study.reference.proxy.train_steps,
                      "overrides": list(s.reference_set), "done": len(ref_done), "total": len(refs),
                      "seconds_per_trial": (sum(t.wall_s for t in ref_done if t.wall_s is not None) / len(ref_done)
                                            if ref_done else None)},
        "variants": variants,
        "verdict": _variants_verdict(variants, s.target_tau, trainings, (len(ref_done), len(refs))),
    }


def _counts(trials: Sequence[Any], total: int) -> dict[str, int]:
    return {"done": sum(1 for t in trials if t.status in FINISHED_STATUSES), "total": total,
            "failed": sum(t.status == TrialStatus.FAILED for t in trials)}


def _variants_verdict(variants: Sequence[Mapping[str, Any]], target: float, trainings: Mapping[str, int],
                      refs: tuple[int, int]) -> dict[str, Any]:
    """The cheapest (variant, rung) in seconds per trial whose tau reaches the target and whose seed CV was measured
    within `CV_TARGET` (the first in order on a tie).

    A rung whose repeated candidates score below `CV_MIN_MEAN` has no measured seed noise: APs that small rank by
    chance as easily as by merit (a tau over a handful of near-zero APs), so such a rung is named but not admitted.
    """
    from nas.calibration.stats import CV_MIN_MEAN, CV_TARGET

    scored = [(v, r) for v in variants for r in v["rungs"] if r["all"]["tau"] is not None]
    ranks = [(v, r) for v, r in scored if r["all"]["tau"] >= target]
    good = [(v, r) for v, r in ranks if r.get("cv_max") is not None and r["cv_max"] <= CV_TARGET]
    unmeasured = [(v, r) for v, r in ranks if r.get("cv_max") is None]

    def cost(vr: tuple[Mapping[str, Any], Mapping[str, Any]]) -> tuple[bool, float]:  # unknown seconds sort last
        return vr[1]["seconds_per_trial"] is None, vr[1]["seconds_per_trial"] or 0.0

    name = step = None
    if good:
        v, r = min(good, key=cost)
        name, step, a, good_r = v["name"], r["step"], r["all"], r
        text = (f"variant {name} at rung {step} is the cheapest proxy that ranks like the reference: tau "
                f"{a['tau']:.2f} (90% interval {_fmt(a['tau_low'])} to {_fmt(a['tau_high'])}) >= {target}")
        if r["seconds_per_trial"] is not None:
            text += f", {r['seconds_per_trial']:.0f} s per trial"
        text += f", seed CV {r['cv_max']:.2f}"
    elif ranks:
        v, r = min(ranks, key=cost)
        why = (f"its repeated candidates' mean AP is below {CV_MIN_MEAN}, so its seed noise is not measured"
               if r.get("cv_max") is None else f"its seed CV {r['cv_max']:.2f} is above {CV_TARGET}")
        text = (f"no variant is admitted: variant {v['name']} at rung {r['step']} reaches tau {r['all']['tau']:.2f} "
                f">= {target}, but {why}")
    elif scored:
        v, r = max(scored, key=lambda vr: vr[1]["all"]["tau"])
        a = r["all"]
        text = (f"no variant reaches tau {target} at any rung: the best is variant {v['name']} at rung {r['step']} "
                f"with tau {a['tau']:.2f} (90% interval {_fmt(a['tau_low'])} to {_fmt(a['tau_high'])})")
    else:
        text = "not enough finished pairs of trainings to rank yet"
    partial = trainings["done"] < trainings["total"] or refs[0] < refs[1]
    if partial:
        missing = f", {refs[0]} of {refs[1]} reference trainings" if refs[0] < refs[1] else ""
        text = f"partial ({trainings['done']} of {trainings['total']} trainings{missing}): " + text
    if good and unmeasured:
        cheaper = [f"{v['name']} at {r['step']}" for v, r in unmeasured
                   if (r["seconds_per_trial"] or 0.0) < (good_r["seconds_per_trial"] or 0.0)]
        if cheaper:
            text += (f" (cheaper, but not admitted: {', '.join(cheaper)}, whose repeated candidates' mean AP is below "
                     f"{CV_MIN_MEAN}: seed noise not measured)")
    return {"variant": name, "good_rung": step, "target_tau": target, "partial": partial, "text": text}


def _agreement(d: Mapping[str, Any]) -> Any:
    from nas.calibration.stats import RankAgreement

    return RankAgreement(**d)


def _verdict(rungs: Sequence[Mapping[str, Any]], best: int | None, target: float, done: int, total: int) -> dict:
    partial = done < total
    scored = [r for r in rungs if r["all"]["tau"] is not None]
    if best is not None:
        r = next(x for x in rungs if x["step"] == best)
        a = r["all"]
        text = (f"rung {best} is the cheapest proxy that ranks like the reference: tau {a['tau']:.2f} (90% interval "
                f"{_fmt(a['tau_low'])} to {_fmt(a['tau_high'])}) >= {target}")
        if r["seconds_per_trial"] is not None:
            text += f", {r['seconds_per_trial']:.0f} s per trial"
    elif scored:
        top = max(scored, key=lambda x: x["all"]["tau"])
        a = top["all"]
        text = (f"no rung reaches tau {target}: the best is rung {top['step']} with tau {a['tau']:.2f} (90% interval "
                f"{_fmt(a['tau_low'])} to {_fmt(a['tau_high'])}); the proxy does not rank architectures like the "
                "reference training")
    else:
        text = "not enough finished pairs of trainings to rank yet"
    if partial:
        text = f"partial ({done} of {total} trainings): " + text
    return {"good_rung": best, "target_tau": target, "partial": partial, "text": text}


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


# --------------------------------------------------------------------------------------------------- reading
def read_reference(reader: Any, study: Study) -> tuple[Study, list[Any]]:
    """A study of variants' reference study (checked by `check_reference`) and its trials, from the same database.

    Raises:
      CalibrationError: it is not there, not a calibration study, or not the one the study was made against.
    """
    try:
        record = reader.open_search(study.reference_from)
    except LookupError:
        raise CalibrationError(f"its reference study {study.reference_from!r} is not in this database") from None
    if getattr(record, "kind", "search") != KIND:
        raise CalibrationError(f"its reference study {study.reference_from!r} is a search, not a calibration study")
    source = Study.from_yaml(record.config)
    check_reference(study, source)
    return source, reader.trials(study.reference_from)


def read_figures(reader: Any, record: Any) -> dict[str, Any]:
    """A stored study's figures (`analyze`), with what it needs read too (a study of variants: its reference study).

    Args:
      reader: a `ResultReader` or `ResultStore`.
      record: the study's search record.

    Raises:
      CalibrationError: a study this version cannot read, or a study of variants whose reference study is gone.
    """
    study = Study.from_yaml(record.config)
    trials = reader.trials(record.name)
    reports = reader.reports([t.id for t in trials]) if trials else {}
    return analyze(study, trials, reports, read_reference(reader, study) if study.variants else None)


def proxy_figures(reader: Any, name: str, base_fingerprint: str) -> dict[str, Any] | None:
    """What study `name` found about the proxy of this (search) fingerprint: its figures, or for a study of variants
    those of the variant that is this proxy (with its own verdict and the study's reference); None if there is none
    or the study cannot be read."""
    try:
        record = reader.open_search(name)
        study = Study.from_yaml(record.config)
        d = read_figures(reader, record)
    except (CalibrationError, LookupError):
        return None
    if not study.variants:
        return d
    for v, figures in zip(study.variants, d["variants"], strict=True):
        if fingerprint(v.config) == base_fingerprint:
            return {**figures, "reference": d["reference"]}
    return None


def find_calibrations(reader: Any, base_fingerprint: str) -> list[tuple[str, dict[str, Any]]]:
    """The calibration studies in a database of the proxy with this (search) fingerprint: (name, stored doc); a
    study of variants is one of each of its variants' proxies."""
    out = []
    for record in reader.list_searches():
        if getattr(record, "kind", "search") != KIND:
            continue
        try:
            doc = load_yaml(record.config, what="a stored study", max_bytes=MAX_STORED_YAML_BYTES) or {}
        except ConfigError:  # not a study this version can read: it is not one of this proxy's
            continue
        try:  # today's fingerprint of its proxy (not the stored one: what a fingerprint holds may change)
            if doc.get("variants"):
                theirs = {fingerprint(from_dict(NasConfig, v["config"])) for v in doc["variants"]}
            else:
                theirs = {fingerprint(from_dict(NasConfig, doc["proxy_config"]))}
        except (KeyError, TypeError, AttributeError, ConfigError):
            continue
        if base_fingerprint in theirs:
            out.append((record.name, doc))
    return out


__all__ = ["CalibrationError", "CalibrationStudy", "Candidate", "KIND", "PlannedTrial", "Study", "StudySettings",
           "Variant", "analyze", "build_study", "build_variant_study", "check_reference", "default_candidates",
           "find_calibrations", "parse_variant", "poor_arch", "proxy_figures", "read_figures", "read_reference",
           "scale_decreased_arch"]
