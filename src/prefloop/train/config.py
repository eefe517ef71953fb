"""Typed settings: dataclass fields that carry their help text and allowed range.

Every method's configuration and the optimisation settings are dataclasses built from
:func:`setting` fields, so the command line, the Python API and the labs read one set of
defaults, and :func:`validate` rejects an ill-typed or out-of-range value with a message naming
the setting and what it allows.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A setting has a value it does not allow; the message names the setting."""


@dataclass(frozen=True)
class Allowed:
    """What a numeric or string setting accepts."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"a number in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"a number {'>' if self.low_open else '>='} {self.low}"
        if self.high is not None:
            return f"a number {'<' if self.high_open else '<='} {self.high}"
        return "a finite number"

    def admits(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True  # not numeric: the type check decides
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[str, ...] = (),
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field with help text and an allowed range (see :class:`Allowed`)."""
    allowed = Allowed(low, high, low_open, high_open, choices)
    metadata = {"help": help, "allowed": allowed}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def signature_fields(
    fn: Any, skip: tuple[str, ...], help: dict[str, str], overrides: dict[str, Any] | None = None
) -> list[tuple[str, Any, Any]]:
    """``make_dataclass`` fields for the keyword options of loss ``fn``, defaults from its
    signature (so they live in one place). ``overrides`` maps an option to its own
    ``(type, setting(...))``; ``beta`` must be positive.
    """
    import inspect

    hints = typing.get_type_hints(fn)
    found = []
    for p in inspect.signature(fn).parameters.values():
        if p.default is inspect.Parameter.empty or p.name in skip:
            continue
        if overrides and p.name in overrides:
            found.append((p.name, *overrides[p.name]))
        elif p.name == "beta":
            found.append((p.name, float, setting(p.default, help[p.name], low=0, low_open=True)))
        else:
            found.append((p.name, hints[p.name], setting(p.default, help.get(p.name, ""))))
    return found


def help_of(f: Field) -> str:
    return f.metadata.get("help", "")


def allowed_of(f: Field) -> Allowed:
    return f.metadata.get("allowed", Allowed())


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (its module uses postponed annotations)."""
    return typing.get_type_hints(cls)


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, tuple)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    return isinstance(value, origin or annotation)


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def validate(config: Any, owner: str) -> None:
    """Check every field of dataclass ``config`` against its type and allowed range.

    ``owner`` names the method or settings group in the message, e.g. ``method 'dpo'``.
    """
    hints = field_types(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(
                f"{owner}: option {f.name!r} must be {type_name(hints[f.name])}, got {value!r}"
            )
        allowed = allowed_of(f)
        if value is not None and not allowed.admits(value):
            raise ConfigError(
                f"{owner}: option {f.name!r} must be {allowed.describe()}, got {value!r}"
            )


def coerce(config_cls: type, owner: str, values: dict[str, Any]) -> Any:
    """Build ``config_cls`` from ``values``, naming any option the class does not have."""
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{owner}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    hints = field_types(config_cls)
    converted = {k: _widen(v, hints[k]) for k, v in values.items()}
    return config_cls(**converted)


def _widen(value: Any, annotation: Any) -> Any:
    """An int where a float is expected is the same number (``--beta 1``)."""
    wants_float = annotation is float or (
        typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and float in typing.get_args(annotation)
        and int not in typing.get_args(annotation)
    )
    if wants_float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
