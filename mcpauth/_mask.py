"""Masking: no credential mcpauth holds or obtained is ever shown, even when a peer echoes it.

A peer can repeat what it received or issued (an ``error_description`` quoting the client
secret, an ID-JAG, a workload JWT, the Basic header). Every value mcpauth is given or
obtains is registered here, with the encodings a peer may echo it in (form-urlencoded,
percent-encoded in either case, JSON-escaped; for client secrets also the Basic
``id:secret`` pair and its Base64), and :func:`mask` replaces each with ``[masked]``.

One mechanism, applied where text is shown:

* every exception message (:class:`~mcpauth.errors.MCPAuthError`), and every peer string
  stored on one (``clean_peer_text`` masks *before* it truncates, so no prefix of a
  secret survives the cut);
* every record of the ``mcpauth`` logger (:class:`MaskingFilter`, which costs nothing for
  records below the logger's level);
* the ``mcpauth`` command's stderr and its JSON output (except ``mcpauth token``, whose
  job is to print the token).

Lifetimes: a value given to a credential object (client secret, private key, a bearer
token string) is masked while that object lives; values obtained (access and refresh
tokens, assertions, ID tokens, ID-JAGs, workload JWTs) are kept, most recent first, up to
:data:`MAX_REMEMBERED`. Values shorter than :data:`MIN_LENGTH` are not masked: they
would mangle ordinary words, and a credential that short is guessable anyway.
"""

import base64
import collections
import itertools
import json
import logging
import threading
import weakref
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple, Union
from urllib.parse import quote, quote_plus

from . import _fork
from ._compat import lazy_pattern

__all__ = ["MASK", "MIN_LENGTH", "MAX_REMEMBERED", "mask", "longest_form", "hold", "remember",
           "basic_forms", "MaskingFilter"]

#: What a masked value is replaced with.
MASK = "[masked]"
#: Shorter values are not masked.
MIN_LENGTH = 8
#: How many obtained values (tokens, assertions) are remembered.
MAX_REMEMBERED = 256

_PERCENT = lazy_pattern(r"%[0-9A-F]{2}")
_PASSES = 4

_lock = threading.Lock()
#: Held values by handle: the values as given until the next rebuild, then their forms.
_held: Dict[int, Union[Tuple[Any, ...], FrozenSet[str]]] = {}
_remembered: "collections.OrderedDict[str, Optional[FrozenSet[str]]]" = (
    collections.OrderedDict())
_handles = itertools.count()
_forms: Tuple[str, ...] = ()


@_fork.on_fork
def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()


def _encodings(value: str) -> Set[str]:
    """``value`` as a peer may echo it: raw, form/percent-encoded, JSON-escaped."""
    out = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    for encoded in (quote_plus(value, safe=""), quote(value, safe="")):
        out.add(encoded)
        out.add(_PERCENT.sub(lambda m: m.group(0).lower(), encoded))
    return out


def basic_forms(client_id: str, client_secret: str) -> Tuple[str, ...]:
    """The RFC 7617 ``id:secret`` pairs (raw and RFC 6749 §2.3.1 form-encoded) and their
    Base64 (without padding, so an unpadded echo matches too)."""
    pairs = {"{}:{}".format(client_id, client_secret),
             "{}:{}".format(quote_plus(client_id, safe=""), quote_plus(client_secret, safe=""))}
    encoded = {base64.b64encode(p.encode("utf-8")).decode("ascii").rstrip("=") for p in pairs}
    return tuple(pairs | encoded)


def _forms_of(values: Iterable[Any]) -> FrozenSet[str]:
    out: Set[str] = set()
    for value in values:
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and len(value) >= MIN_LENGTH:
            out.update(f for f in _encodings(value) if len(f) >= MIN_LENGTH)
    return frozenset(out)


def _rebuild() -> None:
    """Recompute the tuple :func:`mask` scans (caller holds _lock); longest first."""
    global _forms, _dirty
    _dirty = False
    _drain()
    every: Set[str] = set()
    for handle, held in list(_held.items()):
        if not isinstance(held, frozenset):
            held = _held[handle] = _forms_of(held)
        every |= held
    for value, known in list(_remembered.items()):
        if known is None:
            known = _remembered[value] = _forms_of([value])
        every |= known
    _forms = tuple(sorted(every, key=len, reverse=True))


def _current() -> Tuple[str, ...]:
    """The forms to scan, rebuilt first if anything was registered or released since
    (registering is then a dict update: a token request pays no rebuild)."""
    if _dirty:
        with _lock:
            if _dirty:
                _rebuild()
    return _forms


_pending: List[int] = []  # handles whose owners are gone, not yet dropped
_dirty = False  # _forms is out of date


def _drain() -> None:
    """Drop the forms of owners that are gone (caller holds _lock)."""
    while _pending:
        _held.pop(_pending.pop(), None)


def _release(handle: int) -> None:
    # A finalizer, run by the garbage collector at any allocation: possibly in this very
    # thread while it holds _lock. It takes no lock: the next rebuild drops the forms
    # (masking a value a little longer is harmless).
    global _dirty
    _pending.append(handle)
    _dirty = True


def hold(owner: Any, *values: Any) -> None:
    """Mask ``values`` (str or bytes; others ignored) for as long as ``owner`` lives
    (for the life of the process when ``owner`` is None).

    Cheap: the encoded forms (a PEM key has dozens) are computed when :func:`mask` next
    runs, which a run that shows no error and logs nothing never does.
    """
    global _dirty
    held = tuple(v for v in values if isinstance(v, (str, bytes)) and len(v) >= MIN_LENGTH)
    if not held:
        return
    handle = next(_handles)
    with _lock:
        _held[handle] = held
        _dirty = True
    if owner is not None:
        weakref.finalize(owner, _release, handle)


def remember(*values: Optional[str]) -> None:
    """Mask ``values`` obtained from a peer or made here (tokens, assertions, JWTs).

    Cheap when they are known already (a dict lookup each): a token read back from a
    cache is remembered again on every read. A new value's encoded forms are computed
    when :func:`mask` next runs.
    """
    global _dirty
    new = None  # type: Optional[List[str]]
    for value in values:  # a loop, not a comprehension: usually one value, already known
        if isinstance(value, str) and len(value) >= MIN_LENGTH and value not in _remembered:
            new = [value] if new is None else new + [value]
    if new is None:
        return
    with _lock:
        for value in new:
            _remembered[value] = None
        while len(_remembered) > MAX_REMEMBERED:
            _remembered.popitem(last=False)
        _dirty = True


def longest_form() -> int:
    """The length of the longest registered form (0 when none is registered)."""
    forms = _current()
    return len(forms[0]) if forms else 0


def mask(text: str) -> str:
    """``text`` with every registered credential, in every registered form, masked.

    A few passes, so that a form that a replacement brought together from the text
    around it (``[masked]`` followed by the rest of another credential) goes too.
    """
    forms = _current()
    for _ in range(_PASSES):
        masked = text
        for form in forms:
            if form in masked:
                masked = masked.replace(form, MASK)
        if masked == text:
            break
        text = masked
    return text


class MaskingFilter(logging.Filter):
    """Masks credentials in every record of the logger it is attached to.

    Filters run only for records the logger's level lets through, so a quiet logger
    pays nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _current():
            try:
                message = record.getMessage()
            except Exception:  # a broken format string: let logging report it
                return True
            masked = mask(message)
            if masked != message:
                record.msg = masked
                record.args = None
        return True


logging.getLogger("mcpauth").addFilter(MaskingFilter())
