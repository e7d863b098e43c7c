"""Every version-dependent branch lives here.

* ``cryptography`` before 3.1 requires an explicit ``backend`` argument ("missing 1
  required positional argument: 'backend'" on Ubuntu 20.04's 2.8); 3.1 and later accept
  ``default_backend()`` without a warning. :func:`backend` returns it, and is the only
  place that imports ``cryptography`` besides :mod:`mcpauth.jws`.
* ``os.register_at_fork`` exists from Python 3.7 on: :func:`at_fork_in_child` uses it
  when it is there; :mod:`mcpauth._fork` also compares ``os.getpid()`` for 3.6.
* ``cryptography`` is imported lazily: ``import mcpauth`` must work on a host without it,
  for users who only send client secrets.
* Compiling a regular expression costs more than a small module's whole import (about
  0.1 ms each on CPython 3.11): :func:`lazy_pattern` compiles one when it is first used.
"""

import os
import re
from typing import Any, AnyStr, Callable, cast

__all__ = ["at_fork_in_child", "backend", "lazy_pattern", "require_cryptography"]

_MISSING = (
    "this feature signs or loads keys and needs the 'cryptography' package "
    "(pip install 'cryptography>=2.8'); client secrets and bearer tokens work without it"
)


def require_cryptography() -> None:
    """Raise :class:`MissingDependencyError` when ``cryptography`` cannot be imported."""
    from .errors import MissingDependencyError  # errors -> _mask -> _fork -> here

    try:
        import cryptography  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(_MISSING, package="cryptography") from exc


def backend() -> Any:
    """The ``backend`` argument for cryptography calls that take one (needed before 3.1)."""
    require_cryptography()
    from cryptography.hazmat.backends import default_backend

    return default_backend()


def at_fork_in_child(function: Callable[[], None]) -> bool:
    """Run ``function`` in the child after every ``os.fork()``; False on Python 3.6,
    which has no ``os.register_at_fork`` (callers detect the fork by its pid instead)."""
    register = getattr(os, "register_at_fork", None)
    if register is None:
        return False
    register(after_in_child=function)
    return True


class _LazyPattern(object):
    """Stands in for a compiled pattern: compiles it when an attribute of it is first used
    (two threads doing so at once may both compile it, harmlessly), then hands each
    attribute of the compiled pattern out."""

    __slots__ = ("_pattern", "_flags", "_compiled")

    def __init__(self, pattern: Any, flags: int) -> None:
        self._pattern = pattern
        self._flags = flags
        self._compiled: Any = None

    def __getattr__(self, name: str) -> Any:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = re.compile(self._pattern, self._flags)
        return getattr(compiled, name)


def lazy_pattern(pattern: AnyStr, flags: int = 0) -> "re.Pattern[AnyStr]":
    """``re.compile(pattern, flags)``, done when the pattern is first used: for a
    module-level pattern (``_NAME = lazy_pattern(...)``) that ``import mcpauth`` need not
    pay for."""
    return cast("re.Pattern[AnyStr]", _LazyPattern(pattern, flags))
