"""Hold-offs: no request to an endpoint until a deadline, after a retryable failure.

A :class:`HoldOff` remembers, per key (a token endpoint URL), until when nothing may be
sent there and the error that started the wait. :meth:`HoldOff.check` is a dict lookup
when nothing is held; while a hold lasts it raises a copy of that error whose
``retry_after`` is the time left. Deadlines use ``time.monotonic()`` (a wall-clock jump
neither ends nor extends a wait).
"""

import threading
import time
from typing import Dict, Tuple

from . import _fork
from .errors import MCPAuthError

__all__ = ["HoldOff"]


class HoldOff(object):
    """Deadlines per key, each with the error that set it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Dict[str, Tuple[float, MCPAuthError]] = {}
        _fork.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "HoldOff(keys={})".format(len(self._held))

    def hold(self, key: str, seconds: float, error: MCPAuthError) -> None:
        """Send nothing for ``key`` during the next ``seconds`` (a later deadline wins)."""
        deadline = time.monotonic() + seconds
        with self._lock:
            current = self._held.get(key)
            if current is None or current[0] < deadline:
                self._held[key] = (deadline, error)

    def check(self, key: str) -> None:
        """Raise the held error (with ``retry_after`` = seconds left) while ``key`` is held."""
        entry = self._held.get(key)  # lock-free read: the common case is "nothing held"
        if entry is None:
            return
        left = entry[0] - time.monotonic()
        if left <= 0:
            with self._lock:
                if self._held.get(key) is entry:
                    del self._held[key]
            return
        raise held_copy(entry[1], left)

    def clear(self) -> None:
        """Forget every hold."""
        with self._lock:
            self._held.clear()


def held_copy(error: MCPAuthError, left: float) -> MCPAuthError:
    """The same error again, saying no request was sent, ``retry_after`` = ``left``."""
    exc = error._reworded("{} (no request sent: retry after {:.1f} s)".format(
        error.message, left))
    exc.retry_after = round(left, 3) or 0.001
    return exc
