"""Who proposes architectures: an RNN policy trained with PPO, regularized evolution, random search.

``import controller`` stays free of TensorFlow: the registry imports a controller's module only when it is built
(Ray Tune's ``SEARCH_ALG_IMPORT`` pattern), and only ``controller/ppo.py`` imports TensorFlow.

Example::

  space = SearchSpace('spinenet49')
  ctrl = build_controller('ppo', space, seed=0, config=PPOConfig(batch_size=16))
  proposals = ctrl.propose(16)
  ctrl.feedback(proposals[0].trial_id, 0.31)
  checkpoint = json.dumps(ctrl.state_dict())
  again = restore_controller(json.loads(checkpoint), space)   # continues exactly where `ctrl` is

Resuming a search after a crash (see `Controller.recover`): either build a fresh controller (same name, space,
seed and config) and call ``recover(finished, pending=running)`` with every finished trial as (decisions, reward
or None) in the order their feedback was given; or ``restore_controller(checkpoint, space)`` and then
``recover(finished_after_checkpoint, pending=running)``. ``running`` lists the decisions of the trials that will be
run again, in proposal order; `recover` returns their proposals with the trial ids to use for their feedback (a
trial already pending in the checkpoint keeps its id). Both ways give the next proposals of the uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.base import STATE_VERSION, ChoiceSpace, Controller, ControllerStatus, Proposal
from controller.config import ControllerConfig, EvolutionConfig, PPOConfig, RandomConfig
from search_space.registry import Registry

# The controllers, by name: their classes' modules are imported on first use (the PPO one loads TensorFlow).
CONTROLLERS = Registry("controller")


def register_controller(name: str, target: str, *, config_cls: type[ControllerConfig]) -> Any:
    """Registers a controller: a `Controller` subclass at ``'module:Class'`` (imported when one is built) and its
    config dataclass (its settings section, ``controller.<name>.<field>``).

    Raises:
      KeyError: the name is taken. ValueError: a malformed name or target.
    """
    return CONTROLLERS.register(name, target, config_cls=config_cls)


register_controller("ppo", "controller.ppo:PPOController", config_cls=PPOConfig)
register_controller("evolution", "controller.evolution:EvolutionController", config_cls=EvolutionConfig)
register_controller("random", "controller.random_search:RandomController", config_cls=RandomConfig)


def controller_names() -> tuple[str, ...]:
    """The registered controller names."""
    return CONTROLLERS.names()


def get_config_class(name: str) -> type[ControllerConfig]:
    """The config class of controller `name` (no heavy import).

    Raises:
      LookupError: for an unknown name, listing the known ones.
    """
    return CONTROLLERS.lookup(name).config_cls  # type: ignore[return-value]


def get_controller_class(name: str) -> type[Controller]:
    """The controller class registered as `name` (imports its module: TensorFlow for 'ppo').

    Raises:
      LookupError: for an unknown name, listing the known ones.
    """
    return CONTROLLERS.load(name)  # type: ignore[no-any-return]


def build_controller(
    name: str, space: ChoiceSpace, *, seed: int | None, config: ControllerConfig | None = None
) -> Controller:
    """Builds a controller by name.

    Args:
      name: 'ppo', 'evolution' or 'random'.
      space: the search space.
      seed: seed of the controller's randomness (None: fresh entropy).
      config: the controller's config (`PPOConfig`, `EvolutionConfig`, `RandomConfig`); None for its defaults.

    Returns:
      A new controller in status NEW.

    Raises:
      LookupError: for an unknown name, listing the known ones.
      ValueError: for a config of another controller, or a bad seed.
    """
    expected = get_config_class(name)
    if config is not None and type(config) is not expected:
        raise ValueError(f"controller {name!r} config: expected a {expected.__name__}, got {type(config).__name__}")
    return get_controller_class(name)(space, seed=seed, config=config)


def restore_controller(state: Mapping[str, Any], space: ChoiceSpace) -> Controller:
    """Builds the controller a `state_dict` came from (its name, seed and config) and loads the state into it.

    Raises:
      LookupError: for an unknown controller name in the state.
      ValueError: for a malformed state, or one saved for another search space.
    """
    if not isinstance(state, Mapping) or "controller" not in state or "config" not in state:
        raise ValueError("restore_controller: expected a dict from Controller.state_dict()")
    name = state["controller"]
    config_cls = get_config_class(name)
    try:
        config = config_cls(**state["config"])
    except TypeError as e:
        raise ValueError(f"restore_controller: the state's config does not fit {config_cls.__name__}: {e}") from None
    ctrl = build_controller(name, space, seed=state.get("seed"), config=config)
    ctrl.load_state_dict(state)
    return ctrl


__all__ = [
    "CONTROLLERS",
    "STATE_VERSION",
    "ChoiceSpace",
    "Controller",
    "ControllerConfig",
    "ControllerStatus",
    "EvolutionConfig",
    "PPOConfig",
    "Proposal",
    "RandomConfig",
    "build_controller",
    "controller_names",
    "get_config_class",
    "get_controller_class",
    "register_controller",
    "restore_controller",
]
