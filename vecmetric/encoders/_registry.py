"""The registry of encoder sources: each prefix (``timm``, ``open_clip``, ...) has one builder."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import EncoderError

__all__ = ["EncoderSource", "register_source", "get_source", "list_sources", "list_models"]


@dataclass(frozen=True)
class EncoderSource:
    """A family of encoders reached by ``PREFIX:NAME`` specs.

    Attributes:
        prefix: the part before the colon.
        build: ``build(name, tag) -> BuiltModel``; ``tag`` is what follows ``@`` or None.
        list_names: yields every name this source knows, for ``vecmetric models``.
        help: one line shown by ``vecmetric models``.
    """

    prefix: str
    build: Callable
    list_names: Callable[[], Iterable[str]]
    help: str


_SOURCES: dict[str, EncoderSource] = {}


def register_source(prefix: str, *, help: str, list_names: Callable[[], Iterable[str]]):
    """Decorator that registers ``build`` as the builder for ``prefix:`` specs."""

    def decorator(build: Callable) -> Callable:
        _SOURCES[prefix] = EncoderSource(prefix, build, list_names, help)
        return build

    return decorator


def get_source(prefix: str) -> EncoderSource:
    from . import _sources  # noqa: F401  (fills the registry)

    try:
        return _SOURCES[prefix]
    except KeyError:
        valid = ", ".join(f"{p}:" for p in sorted(_SOURCES))
        raise EncoderError(
            f"unknown model source {prefix!r}",
            hint=f"use 'default', a checkpoint folder, or one of {valid}",
        ) from None


def list_sources() -> list[EncoderSource]:
    from . import _sources  # noqa: F401

    return [_SOURCES[p] for p in sorted(_SOURCES)]


def list_models(pattern: str | None = None) -> list[str]:
    """Every spec the loader knows (``default``, ``timm:...``, ``open_clip:ARCH@TAG``), filtered by a glob."""
    names = ["default"]
    for source in list_sources():
        if source.prefix == "default":
            continue
        names.extend(f"{source.prefix}:{n}" for n in source.list_names())
    if pattern:
        pat = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pat.lower())]
    return names
