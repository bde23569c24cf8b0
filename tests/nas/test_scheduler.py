"""The ASHA scheduler's decisions on hand-made rung tables, and the reward rule for pruned trials (no driver)."""

from __future__ import annotations

import pytest

from nas.engine.schedulers import pruned_reward, quantile, rank_quantile
from nas.engine.schedulers.asha import AshaScheduler


def test_nothing_is_stopped_before_a_rung_holds_min_results_rewards():
    s = AshaScheduler(rungs=(10,), eta=3, min_results=3)
    # Ever worse rewards: the first three are not judged (too few results before them), the fourth is.
    assert [s.on_result(t, 10, r) for t, r in enumerate([0.3, 0.2, 0.1, 0.05])] == [True, True, True, False]
    assert s.rewards(10) == [0.05, 0.1, 0.2, 0.3]


def test_a_trial_continues_only_in_the_top_one_over_eta_of_what_arrived_before_it():
    s = AshaScheduler(rungs=(100, 200), eta=3, min_results=3)
    decisions = [s.on_result(t, 100, r) for t, r in enumerate([0.3, 0.2, 0.1, 0.4, 0.25, 0.22, 0.5])]
    # 0.4: best of 4 (top 1); 0.25: 3rd of 5 (top 1); 0.22: 4th of 6 (top 2); 0.5: best of 7 (top 2).
    assert decisions == [True, True, True, True, False, False, True]


def test_promotion_is_asynchronous_the_same_reward_is_judged_by_what_arrived_first():
    early, late = AshaScheduler(rungs=(5,), eta=2, min_results=2), AshaScheduler(rungs=(5,), eta=2, min_results=2)
    # A trial with reward 0.2 arriving after two weaker ones continues; after two stronger ones it stops.
    for t, r in enumerate([0.1, 0.15]):
        early.on_result(t, 5, r)
    for t, r in enumerate([0.3, 0.25]):
        late.on_result(t, 5, r)
    assert early.on_result(9, 5, 0.2) is True
    assert late.on_result(9, 5, 0.2) is False
    # Decisions already made stand: a later, better trial does not stop one that continued.
    assert early.on_result(10, 5, 0.9) is True and early.rewards(5) == [0.1, 0.15, 0.2, 0.9]


@pytest.mark.parametrize("eta, kept", [(2, 9), (3, 4), (4, 3)])
def test_eta_sets_how_many_continue(eta, kept):
    # After 9 stored zeros, descending rewards: the i-th has i better ones among n = 10 + i, and continues while
    # i < (10 + i) // eta.
    s = AshaScheduler(rungs=(1,), eta=eta, min_results=1)
    s.seed([{1: v} for v in (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)])  # 9 stored results, all 0
    rewards = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert sum(s.on_result(t, 1, r) for t, r in enumerate(rewards)) == kept


def test_rungs_are_judged_separately_and_seeded_from_stored_curves():
    s = AshaScheduler(rungs=(50, 100), eta=2, min_results=2)
    s.seed([{50: 0.1, 100: 0.3, 150: 0.9}, {50: 0.2}])  # a step that is no rung is ignored
    assert s.rewards(50) == [0.1, 0.2] and s.rewards(100) == [0.3]
    assert s.on_result(1, 100, 0.01) is True  # rung 100 held 1 < 2 results
    assert s.on_result(2, 50, 0.05) is False  # rung 50 held 2: 0.05 is the worst of 3
    assert s.on_result(2, 50, 0.05) is False and s.rewards(50) == [0.05, 0.1, 0.2]  # a repeat is not recorded twice


@pytest.mark.parametrize("kwargs, match", [
    ({"rungs": (), "eta": 3, "min_results": 3}, "integer steps"),
    ({"rungs": (100, 50), "eta": 3, "min_results": 3}, "increasing"),
    ({"rungs": (50,), "eta": 1, "min_results": 3}, "eta: expected an integer >= 2"),
    ({"rungs": (50,), "eta": 3, "min_results": 0}, "min_results"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AshaScheduler(**kwargs)


def test_a_step_that_is_no_rung_is_refused():
    with pytest.raises(ValueError, match="step 75 is not a rung"):
        AshaScheduler(rungs=(50,), eta=3, min_results=3).on_result(0, 75, 0.1)


def test_rank_quantile_and_quantile():
    assert rank_quantile([0.1, 0.2, 0.3, 0.4, 0.5], 0.1) == 0.0
    assert rank_quantile([0.1, 0.2, 0.3, 0.4, 0.5], 0.5) == 1.0
    assert rank_quantile([0.1, 0.2, 0.3, 0.4, 0.5], 0.3) == 0.5
    assert rank_quantile([0.2, 0.2, 0.2], 0.2) == 0.5  # ties: mid-rank
    assert rank_quantile([0.7], 0.7) == 0.5
    assert quantile([1.0, 3.0, 2.0], 0.5) == 2.0 and quantile([1.0, 2.0], 0.25) == 1.25
    assert quantile([1.0, 2.0], 0.0) == 1.0 and quantile([1.0, 2.0], 1.0) == 2.0


def test_pruned_reward_maps_the_rung_rank_onto_the_final_rewards():
    rung = [0.01, 0.02, 0.03, 0.04, 0.05]  # APs after a few steps
    finals = [0.20, 0.30, 0.40]  # completed trials' final rewards
    assert pruned_reward(0.01, rung, finals) == 0.20  # the worst at its rung: the worst final reward
    assert pruned_reward(0.03, rung, finals) == 0.30  # the median: the median
    assert pruned_reward(0.02, rung, finals) == pytest.approx(0.25)  # a quarter up: a quarter up
    # Before any trial has completed there is no final distribution: the rung reward itself.
    assert pruned_reward(0.02, rung, []) == 0.02


# --------------------------------------------------------------------------------------------------- the interface
def test_the_registry_builds_every_scheduler_from_its_section_and_lists_them_on_a_typo():
    from nas.engine.schedulers import NoScheduler, build_scheduler, scheduler_names
    from nas.engine.schedulers.asha import AshaConfig
    from nas.engine.schedulers.median import MedianConfig, MedianStoppingScheduler

    assert scheduler_names()[0] == "none" and {"asha", "median"} <= set(scheduler_names())
    assert isinstance(build_scheduler("none", None, ()), NoScheduler) and build_scheduler("none", None, ()).rungs == ()
    asha = build_scheduler("asha", AshaConfig(eta=4), (50, 100))
    assert isinstance(asha, AshaScheduler) and (asha.rungs, asha.eta, asha.min_results) == ((50, 100), 4, 4)
    median = build_scheduler("median", MedianConfig(warmup_trials=2, warmup_steps=60), (50, 100))
    assert isinstance(median, MedianStoppingScheduler) and (median.warmup_trials, median.warmup_steps) == (2, 60)
    with pytest.raises(LookupError, match="unknown scheduler 'hyperbnd'; expected one of none, asha, median"):
        build_scheduler("hyperbnd", None, ())


def test_a_scheduler_told_of_stored_trials_decides_as_one_that_watched_them():
    """What a resume relies on: on_complete with stored curves leaves the same state as the live reports did."""
    from nas.engine.schedulers import Decision
    from nas.engine.schedulers.median import MedianStoppingScheduler

    history = [(0, {50: 0.3, 100: 0.4}, 0.5), (1, {50: 0.1}, None), (2, {50: 0.25, 100: 0.3}, 0.35),
               (3, {50: 0.2, 100: 0.2}, 0.25)]
    for make in (lambda: AshaScheduler(rungs=(50, 100), eta=2, min_results=2),
                 lambda: MedianStoppingScheduler(rungs=(50, 100), warmup_trials=2)):
        live, resumed = make(), make()
        for t, curve, final in history:
            for step, r in curve.items():
                live.on_report(t, step, r)
            live.on_complete(t, final_reward=final)
            resumed.on_complete(t, final_reward=final, curve=curve)
            resumed.on_complete(t, final_reward=final, curve=curve)  # told twice (a cached trial's source): once
        assert live.final_rewards == resumed.final_rewards == [0.5, 0.35, 0.25]
        for step, r in ((50, 0.22), (100, 0.31)):
            assert live.on_report(9, step, r) == resumed.on_report(9, step, r)
            assert isinstance(live.on_report(8, step, r), Decision)
        assert live.pruned_reward(50, 0.22) == resumed.pruned_reward(50, 0.22)


def test_the_median_rule_stops_a_trial_whose_best_is_below_the_completed_median_after_its_warmup():
    from nas.engine.schedulers import Decision
    from nas.engine.schedulers.median import MedianStoppingScheduler

    s = MedianStoppingScheduler(rungs=(50, 100), warmup_trials=2, warmup_steps=100)
    s.on_report(0, 50, 0.2)
    s.on_complete(0, final_reward=0.3)
    assert s.on_report(1, 100, 0.0) == Decision.CONTINUE  # one completed trial: still warming up
    s.on_complete(1, final_reward=None)  # failed or pruned trials are not compared with
    s.on_report(2, 50, 0.4)
    s.on_report(2, 100, 0.5)
    s.on_complete(2, final_reward=0.6)
    assert s.on_report(3, 50, 0.0) == Decision.CONTINUE  # before warmup_steps
    s.on_report(0, 100, 0.0)
    # At 100 only trial 2 completed with a value there (0.5): a best of 0.4 is below it, 0.5 is not.
    assert s.on_report(4, 100, 0.4) == Decision.STOP
    assert s.on_report(5, 100, 0.5) == Decision.CONTINUE
    # Its best so far counts, not the last report: 0.6 at 50 then 0.1 at 100 continues.
    loose = MedianStoppingScheduler(rungs=(50, 100), warmup_trials=1)
    for t, (a, b) in enumerate([(0.3, 0.4), (0.2, 0.3)]):
        loose.on_report(t, 50, a)
        loose.on_report(t, 100, b)
        loose.on_complete(t, final_reward=b)
    assert loose.on_report(7, 50, 0.6) == Decision.CONTINUE and loose.on_report(7, 100, 0.1) == Decision.CONTINUE
    assert loose.on_report(8, 50, 0.2) == Decision.STOP  # below the median 0.25 of 0.3 and 0.2
    # Its fed reward: its rank among the completed values at 50, mapped onto the final rewards.
    assert loose.pruned_reward(50, 0.2) == pytest.approx(quantile([0.4, 0.3], rank_quantile([0.3, 0.2, 0.2], 0.2)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(rungs=()), "increasing integer steps"), (dict(rungs=(100, 50)), "increasing integer steps"),
    (dict(rungs=(50,), warmup_trials=0), "warmup_trials must be an integer >= 1"),
    (dict(rungs=(50,), warmup_steps=-1), "warmup_steps must be an integer >= 0"),
])
def test_bad_median_settings_are_refused(kwargs, match):
    from nas.engine.schedulers.median import MedianStoppingScheduler

    with pytest.raises(ValueError, match=match):
        MedianStoppingScheduler(**kwargs)


def test_a_scheduler_registered_by_one_call_is_chosen_and_configured_by_name():
    import dataclasses

    from nas.config.codec import ConfigError, resolve
    from nas.config.schema import NasConfig, scheduler_rungs
    from nas.engine.schedulers import build_scheduler, register_scheduler, schedulers

    @dataclasses.dataclass(frozen=True)
    class EveryOtherConfig:
        rungs: tuple[int, ...] = (100,)

    register_scheduler("every-other", f"{__name__}:EveryOther", config_cls=EveryOtherConfig)
    try:
        cfg = resolve(NasConfig, NasConfig(), ["scheduler.type=every-other", "scheduler.every-other.rungs=[50]"])
        scheduler = build_scheduler(cfg.scheduler.type, cfg.scheduler.get(), scheduler_rungs(cfg))
        assert isinstance(scheduler, EveryOther) and scheduler.rungs == (50,)
    finally:
        schedulers().unregister("every-other")
    with pytest.raises(ConfigError, match="unknown scheduler 'every-other'"):  # unregistered again
        resolve(NasConfig, NasConfig(), ["scheduler.type=every-other"])


class EveryOther:
    """A scheduler made in a test: stops every second trial it is told of at a rung."""

    def __init__(self, rungs):
        self.rungs = tuple(rungs)

    @classmethod
    def from_config(cls, settings, rungs):
        return cls(rungs)


def test_each_scheduler_says_its_cut_at_a_rung():
    from nas.engine.schedulers import NoScheduler
    from nas.engine.schedulers.median import MedianStoppingScheduler

    asha = AshaScheduler(rungs=(100,), eta=3, min_results=3)
    assert asha.cut(100) is None  # too few rewards to judge by
    for t, r in enumerate([0.3, 0.2, 0.1, 0.4, 0.25, 0.35]):
        asha.on_result(t, 100, r)
    assert asha.cut(100) == 0.35  # 6 rewards, 2 continue: the 2nd best
    assert asha.on_result(9, 100, 0.34) is False and asha.on_result(10, 100, 0.5) is True
    median = MedianStoppingScheduler(rungs=(100,), warmup_trials=2)
    for t, (mid, final) in enumerate([(0.2, 0.5), (0.4, 0.6)]):
        median.on_report(t, 100, mid)
        median.on_complete(t, final_reward=final)
    assert median.cut(100) == pytest.approx(0.3)
    assert NoScheduler().cut(100) is None
