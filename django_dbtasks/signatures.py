"""Task function signatures: the parameter names, and how one call binds to them.

``unique=`` and ``sensitive=`` may name arguments; a misspelt name would
silently do nothing, so the decorator refuses it with the real names. Both
also map a stored call's values to those names, through ``inspect.signature``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from .compat import InvalidTask


def parameter_names(func: Callable[..., Any], takes_context: bool) -> list[str]:
    """The names a caller passes, in order (the context argument left out)."""
    names = list(inspect.signature(func).parameters)
    return names[1:] if takes_context else names


def positional_names(func: Callable[..., Any], takes_context: bool, count: int) -> list[str]:
    """The parameter each of ``count`` positional values binds to (``*args`` repeats)."""
    names: list[str] = []
    for name, parameter in list(inspect.signature(func).parameters.items())[takes_context:]:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return names + [name] * (count - len(names))
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(name)
    return names[:count]


def as_names(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def check_names(
    func: Callable[..., Any], option: str, names: list[str], takes_context: bool
) -> None:
    """Raise ``InvalidTask`` if ``names`` holds an argument ``func`` does not take."""
    parameters = parameter_names(func, takes_context)
    missing = [name for name in names if name not in parameters]
    if missing:
        raise InvalidTask(
            f"{option} names {', '.join(map(repr, missing))}, which {func.__qualname__}() does "
            f"not take; its arguments are {', '.join(parameters) or 'none'}."
        )


def bind(
    func: Callable[..., Any], takes_context: bool, args: Sequence[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Map one call's arguments to parameter names, defaults applied."""
    leading = (None,) if takes_context else ()
    bound = inspect.signature(func).bind(*leading, *args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)
