"""Result fingerprints: what determines a trial's reward, so a stored result is reused only where it means the same.

A trial's reward depends on the evaluator, on the settings of the evaluator that change the score (the data, image
size, steps, schedule, model scaling, evaluation: not seeds, threads, logging or intermediate evaluations), and on
the reward function. `fingerprint` hashes exactly those. The search job reuses a stored result (dedup, 'cached')
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

from nas.config.schema import NasConfig
from nas.config.codec import to_dict
from proxy_task.config import GENERATOR_VERSION

# Proxy settings that do not change a trial's score. The seed is left out on purpose: a trial's seed is the
# search's seed plus its index, and a result for one seed stands for the architecture (as the dedup always did).
_PROXY_NON_SCORE = frozenset({"seed", "threads", "log_every", "eval_at_steps", "deterministic", "eval_batch_size"})
# The surrogate's AP depends only on these proxy settings (its curve follows the proxy's steps).
_SURROGATE_PROXY = ("train_steps",)
_SURROGATE_NON_SCORE = frozenset({"duration_s"})
# A surrogate trial's params and FLOPs are those of the proxy's detector (`ProxyConfig.cost` with the dataset's
# classes), so with a FLOPs reward these proxy settings and the dataset change its reward too.
_SURROGATE_COST_PROXY = ("image_size", "filter_size_scale", "resample_alpha", "block_repeats", "endpoints_num_filters",
                         "head_num_filters", "head_num_convs", "activation")


def score_settings(cfg: NasConfig) -> dict[str, Any]:
    """The settings that determine a trial's reward, as a plain dict (what `fingerprint` hashes)."""
    evaluator = cfg.evaluator.type
    out: dict[str, Any] = {"evaluator": evaluator}
    if evaluator == "surrogate":
        settings = {k: v for k, v in to_dict(cfg.evaluator.get()).items() if k not in _SURROGATE_NON_SCORE}
        if settings.get("target_seed") is None:
            settings["target_seed"] = cfg.search.seed
        out["surrogate"] = settings
        out["space"] = {"family": cfg.search.family, "window": cfg.search.window}
        out["proxy"] = {k: getattr(cfg.proxy, k) for k in _SURROGATE_PROXY}
        if cfg.search.reward == "ap-flops":
            out["proxy"].update({k: getattr(cfg.proxy, k) for k in _SURROGATE_COST_PROXY})
            # Only the classes count, which the synthetic generator fixes whatever its parameters.
            out["proxy"]["data"] = _data_settings(to_dict(cfg.proxy.data), whole_synth=False)
    else:
        proxy = {k: v for k, v in to_dict(cfg.proxy).items() if k not in _PROXY_NON_SCORE}
        if proxy.get("mixed_precision") == "float32":
            # The default, and what every trial stored before the setting existed: left out, so their fingerprints
            # stand. Another setting changes the scores (a little), so it gets fingerprints of its own; 'auto' is one
            # fingerprint whatever each trial picked on its devices (the trial stores what it trained in).
            del proxy["mixed_precision"]
        proxy["data"] = _data_settings(proxy["data"], whole_synth=True)
        out["proxy"] = proxy
        section = cfg.evaluator.get()
        if section is not None:
            out[evaluator] = to_dict(section)
    s = cfg.search
    out["reward"] = {"reward": s.reward}
    if s.reward == "ap-flops":
        out["reward"].update(target_flops=s.target_flops, flops_exponent=s.flops_exponent)
    return out


def _data_settings(data: dict[str, Any], *, whole_synth: bool) -> dict[str, Any]:
    """A dataset as a fingerprint sees it: the synthetic set by its generator (and its parameters if `whole_synth`),
    wherever it is cached; a made split by its folder, which says it all."""
    if data.get("kind") == "synth":
        synth = {k: v for k, v in data.items() if k != "path"} if whole_synth else {"kind": "synth"}
        return {**synth, "generator_version": GENERATOR_VERSION}
    return {"kind": data.get("kind"), "path": data.get("path")}


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
    `spinenas top` stays light)."""
    d = NasConfig.migrate_dict(d)
    search, proxy = d.get("search") or {}, d.get("proxy") or {}
    evaluator = (d.get("evaluator") or {}).get("type", "retinanet")
    steps = proxy.get("train_steps", "?")
    if evaluator == "surrogate":
        target = ((d.get("evaluator") or {}).get("surrogate") or {}).get("target_seed")
        target = search.get("seed", 0) if target is None else target
        what = f"surrogate (target seed {target}, {search.get('family', '?')}) {steps} steps"
    else:
        data = proxy.get("data") or {}
        where = data.get("kind", "?") if data.get("kind") == "synth" else (data.get("path") or data.get("kind", "?"))
        what = f"{evaluator} {proxy.get('image_size', '?')} px {steps} steps on {where}"
        if proxy.get("mixed_precision", "float32") != "float32":
            what += f", {proxy['mixed_precision']} precision"
    reward = search.get("reward", "ap")
    if reward == "ap-flops":
        reward = f"{reward} (target {search.get('target_flops', 0):.3g})"
    return f"{what}, reward {reward}"


__all__ = ["describe", "describe_dict", "fingerprint", "score_settings"]
