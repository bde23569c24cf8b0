"""Config sections that choose one of several registered implementations by type (Model Garden's `OneOfConfig`).

A section holds ``type`` (the chosen name) and one settings object per registered choice, so a preset, a YAML
file or ``--set`` can set the settings of any of them, and switching ``type`` keeps them. In YAML::

  controller:
    type: ppo
    ppo: {learning_rate: 0.001, batch_size: 10, ...}
    evolution: {population_size: 50, tournament_size: 10}
    random: {}

Each section class names its registry (`choices`: name -> settings dataclass, or None for a choice with no
settings of its own) and the fields of those dataclasses that have their home elsewhere in the config
(`excluded`: e.g. ``reward_for_failure``, a setting of the search). `nas.config.codec` reads and writes them; the
registries are looked up only then, so importing this module loads no implementation.

Example::

  EvaluatorConfig(type='surrogate').get()           # SurrogateConfig()
  EvaluatorConfig.of('surrogate', noise=0.02)       # type surrogate, its section changed
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class OneOf(abc.ABC):
    """Base of the sections chosen by type. Subclasses set `kind`, `default_type` and `choices`.

    Attributes:
      type: the chosen implementation's registered name.
      sections: name -> settings dataclass of every registered choice that has settings (missing ones get their
        defaults).
    """

    #: What the choices are, in messages ('controller', 'evaluator', 'runner').
    kind: ClassVar[str] = ""
    #: Settings fields that belong to another part of the config: not read or written in these sections.
    excluded: ClassVar[Mapping[str, str]] = {}

    type: str = ""
    sections: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    @abc.abstractmethod
    def choices(cls) -> dict[str, type | None]:
        """Registered name -> settings dataclass (None: no settings): the subclass's registry."""

    @classmethod
    def default_type(cls) -> str:
        """The type chosen when none is given."""
        return next(iter(cls.choices()))

    @classmethod
    def of(cls, type_: str, **settings: Any) -> OneOf:
        """A section of `type_` with some of its settings changed from their defaults."""
        base = cls(type=type_)
        return base.with_settings(type_, **settings) if settings else base

    def with_settings(self, name: str, **settings: Any) -> OneOf:
        """This section with choice `name`'s settings changed (the chosen type stays): e.g. a preset's settings for
        a controller the user may pick with --controller."""
        current = self.sections.get(name)
        if current is None:
            raise ValueError(f"{self.kind} {name!r} has no settings, got {sorted(settings)}")
        return type(self)(type=self.type, sections={**self.sections, name: dataclasses.replace(current, **settings)})

    def __post_init__(self) -> None:
        choices = self.choices()
        type_ = self.type or self.default_type()
        if type_ not in choices:
            raise ValueError(f"unknown {self.kind} {type_!r}; expected one of {', '.join(choices)}")
        sections = dict(self.sections)
        for name in sections:
            if name not in choices or choices[name] is None:
                known = [n for n, c in choices.items() if c is not None]
                raise ValueError(f"{self.kind} settings {name!r}: no such {self.kind} with settings; expected one of "
                                 f"{', '.join(known)}")
            if type(sections[name]) is not choices[name]:
                raise ValueError(f"{self.kind} settings {name!r}: expected a {choices[name].__name__}, got "
                                 f"{type(sections[name]).__name__}")
        for name, cls in choices.items():
            if cls is not None and name not in sections:
                sections[name] = cls()
        object.__setattr__(self, "type", type_)
        object.__setattr__(self, "sections", sections)

    def get(self) -> Any:
        """The settings of the chosen type (None when it has none)."""
        return self.sections.get(self.type)

    def __hash__(self) -> int:
        return hash((self.type, tuple(sorted((k, v) for k, v in self.sections.items()))))


__all__ = ["OneOf"]
