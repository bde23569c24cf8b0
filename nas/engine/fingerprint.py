"""Result fingerprints: what determines a trial's reward, so a stored result is reused only where it means the same.

A trial's reward depends on the evaluator, on the settings that change its score, and on the reward function.
Each evaluator declares its score's settings itself (`proxy_task.evaluator.Evaluator.score_settings`; a trained
proxy's are the data, image size, steps, schedule, model scaling, evaluation: not seeds, threads, logging or
intermediate evaluations); this module adds the evaluator's name, the reward's settings and a study's mark, and
`fingerprint` hashes exactly those. The search job reuses a stored result (dedup, 'cached')
only from a trial with the same fingerprint, and `spinenas top` / `export best` rank within one.

A search's FLOPs limit (``search.max_flops``) is left out: it decides which architectures are trained, not what a
trained one scores, so results of searches with and without a limit are reused across them (a rejected trial is
never a result: it has no reward to reuse).

The fingerprint is computed from a `NasConfig`; old databases get theirs from their stored configs when
`spinenas db upgrade` runs. Changing what goes into it changes every fingerprint: do that only with a migration
that recomputes the stored ones.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nas.config.codec import to_dict
from nas.config.schema import NasConfig


def score_settings(cfg: NasConfig) -> dict[str, Any]:
    """The settings that determine a trial's reward, as a plain dict (what `fingerprint` hashes): the evaluator's
    name, what the evaluator declares changes its scores (`Evaluator.score_settings`; the part of its own section
    that counts is kept under its name) and the reward function's settings."""
    from proxy_task.evaluator import get_evaluator_class

    evaluator = cfg.evaluator.type
    section = cfg.evaluator.get()
    s = cfg.search
    declared = get_evaluator_class(evaluator).score_settings(
        None if section is None else to_dict(section), to_dict(cfg.proxy), to_dict(s),
        reward_uses_cost=_reward_uses_cost(s.reward),
    )
    out: dict[str, Any] = {"evaluator": evaluator}
    if "settings" in declared:
        out[evaluator] = declared.pop("settings")
    out.update(declared)
    out["reward"] = {"reward": s.reward}
    if s.reward == "ap-flops":
        out["reward"].update(target_flops=s.target_flops, flops_exponent=s.flops_exponent)
    return out


def _reward_uses_cost(reward: str) -> bool:
    """Whether reward function `reward` reads a trial's FLOPs (`nas.engine.reward.compute_reward`)."""
    return reward == "ap-flops"


def fingerprint(cfg: NasConfig, *, study: str | None = None) -> str:
    """16 hex digits of the SHA-256 of `score_settings`, as canonical JSON.

    Args:
      cfg: the config the trials run with.
      study: marks trials that are not search results (a calibration study's, e.g. 'calibration'): they get a
        fingerprint of their own, so dedup, `top` and controllers never mix them with a search's rewards.
    """
    settings = score_settings(cfg)
    if study is not None:
        settings["study"] = study
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(cfg: NasConfig) -> str:
    """A short human description of what a fingerprint stands for, e.g. 'retinanet 128 px 800 steps on synth, reward
    ap'."""
    return describe_dict(to_dict(cfg))


def describe_dict(d: dict[str, Any]) -> str:
    """`describe` of a stored config as a plain dict (any layout this version reads; no config classes built, so
    `spinenas top` stays light). An evaluator that is not registered here (a plug-in `top` did not import) or whose
    module does not import is described as a trained proxy is."""
    from proxy_task.evaluator import Evaluator, evaluator_names, get_evaluator_class
    from search_space.registry import PluginError

    d = NasConfig.migrate_dict(d)
    search, proxy = d.get("search") or {}, d.get("proxy") or {}
    section = d.get("evaluator") or {}
    evaluator = section.get("type", evaluator_names()[0])  # a config stored before there was a choice: the default
    try:
        cls = get_evaluator_class(evaluator)
    except (LookupError, PluginError):
        cls = Evaluator
    what = f"{evaluator} {cls.describe(section.get(evaluator), proxy, search)}"
    reward = search.get("reward", "ap")
    if reward == "ap-flops":
        reward = f"{reward} (target {search.get('target_flops', 0):.3g})"
    return f"{what}, reward {reward}"


__all__ = ["describe", "describe_dict", "fingerprint", "score_settings"]
