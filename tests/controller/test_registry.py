"""The registry: names, configs, lazy TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller import (
    EvolutionConfig,
    PPOConfig,
    build_controller,
    controller_names,
    get_config_class,
    restore_controller,
)
from tests.controller.conftest import ToySpace

SPACE = ToySpace((3, 4))


def test_names_and_config_classes():
    assert controller_names() == ("ppo", "evolution", "random")
    assert get_config_class("ppo") is PPOConfig
    assert get_config_class("evolution") is EvolutionConfig


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(LookupError, match=r"unknown controller 'rl'; expected one of ppo, evolution, random"):
        build_controller("rl", SPACE, seed=0)
    with pytest.raises(LookupError, match="unknown controller 'ppo2'"):
        restore_controller({"controller": "ppo2", "config": {}}, SPACE)


def test_a_config_of_another_controller_is_refused():
    with pytest.raises(ValueError, match="controller 'evolution' config: expected a EvolutionConfig, got PPOConfig"):
        build_controller("evolution", SPACE, seed=0, config=PPOConfig())


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_a_bad_seed_is_refused(seed):
    with pytest.raises(ValueError, match="seed: expected an integer >= 0 or None"):
        build_controller("random", SPACE, seed=seed)


def test_seed_none_draws_fresh_entropy_and_is_still_resumable():
    a, b = build_controller("random", ToySpace((100,) * 4), seed=None), build_controller(
        "random", ToySpace((100,) * 4), seed=None
    )
    assert a.propose(3) != b.propose(3)
    c = restore_controller(a.state_dict(), ToySpace((100,) * 4))
    assert [p.decisions for p in c.propose(3)] == [p.decisions for p in a.propose(3)]


def test_importing_and_using_the_numpy_controllers_loads_no_tensorflow():
    code = (
        "import sys\n"
        "from controller import build_controller, PPOConfig\n"
        "from search_space import SearchSpace\n"
        "for name in ('random', 'evolution'):\n"
        "    c = build_controller(name, SearchSpace('spinenet49'), seed=0)\n"
        "    for p in c.propose(60):\n"
        "        c.feedback(p.trial_id, 0.1)\n"
        "import proxy_task.surrogate\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'ray')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
