"""Fork safety: a child process never inherits a lock that nobody in it will release.

``os.fork()`` copies only the thread that called it. A lock another thread held at that
moment (a token renewal in flight, a cache read) stays locked forever in the child, so
its first request would block for good (pre-fork servers, ``multiprocessing`` with the
fork start method). POSIX ``pthread_atfork`` is the usual cure; Python exposes it as
``os.register_at_fork`` from 3.7 on. Python 3.6 has no such hook (and a fork made from C
may bypass it), so every path that takes a lock first calls :func:`check`, which
compares ``os.getpid()`` with the pid recorded at the last reset (one system call,
0.1-0.3 µs). The per-request path with a valid cached token takes no lock and makes no
check: it reads immutable records only. Either way the child gets new locks and forgets
what threads of the parent were doing; tokens and discovery results already obtained
stay (they are plain data).

Objects holding locks register themselves with :func:`register` and implement
``_after_fork()``; module-level locks register a function with :func:`on_fork`.
"""

import os
import weakref
from typing import Any, Callable, List

from ._compat import at_fork_in_child

__all__ = ["check", "register", "on_fork"]

_pid = os.getpid()
_objects: "weakref.WeakSet[Any]" = weakref.WeakSet()
_functions: List[Callable[[], None]] = []


def register(obj: Any) -> None:
    """Call ``obj._after_fork()`` in a child process, before it uses ``obj`` again.

    Held weakly: registering does not keep ``obj`` alive.
    """
    _objects.add(obj)


def on_fork(function: Callable[[], None]) -> Callable[[], None]:
    """Call ``function()`` in a child process (a decorator for module-level resets)."""
    _functions.append(function)
    return function


def _reset() -> None:
    global _pid
    _pid = os.getpid()
    for function in list(_functions):
        function()
    for obj in list(_objects):
        obj._after_fork()


def check() -> None:
    """Reset every registered lock if this is a child the fork hook did not reach."""
    if os.getpid() != _pid:
        _reset()


at_fork_in_child(_reset)
