"""Writes ppo_state_v1.json: a PPO controller's state as state version 1 saved it, with what that version did next.

Run with the code of a version-1 commit first on the path (the fixture's ``made_with`` names the one used):

    git worktree add --detach /tmp/ppo-v1 84b3567
    PYTHONPATH=/tmp/ppo-v1 .venv/bin/python tests/controller/make_ppo_state_v1.py
    git worktree remove /tmp/ppo-v1

The controller (seed 3, `SPACE`, a small policy) is driven two proposals at a time for 22 rewards, then proposes
two more that stay pending when the state is saved; `continuation` is what that code proposed next when those two
and every later proposal were rewarded by `target_reward(TARGET)`, up to 40 proposals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import controller
from controller import PPOConfig, build_controller
from controller.base import STATE_VERSION
from tests.controller.conftest import ToySpace, drive, target_reward

SPACE = (3, 5, 2, 4, 6, 3)
TARGET = (2, 4, 1, 0, 5, 2)
CONFIG = {"hidden_size": 16, "embedding_size": 8, "batch_size": 4, "epochs": 3, "learning_rate": 0.05}


def main() -> None:
    assert STATE_VERSION == 1, f"run this with the code of a version-1 commit first on the path (got {STATE_VERSION})"
    root = os.path.dirname(os.path.dirname(os.path.abspath(controller.__file__)))
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    reward = target_reward(TARGET)
    ctrl = build_controller("ppo", ToySpace(SPACE), seed=3, config=PPOConfig(**CONFIG))
    drive(ctrl, reward, budget=22, batch=2)
    pending = ctrl.propose(2)
    state = json.loads(json.dumps(ctrl.state_dict()))
    for p in pending:
        ctrl.feedback(p.trial_id, reward(p.decisions))
    continuation = [list(p.decisions) for p in pending] + [list(d) for d, _ in drive(ctrl, reward, 40, batch=2)]
    doc = {"made_with": f"tests/controller/make_ppo_state_v1.py at commit {commit}", "space": list(SPACE),
           "target": list(TARGET), "config": CONFIG, "seed": 3, "pending": [p.trial_id for p in pending],
           "state": state, "continuation": continuation}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ppo_state_v1.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
