"""A token cache shared by many hosts through Redis (or Valkey, wire-compatible).

:class:`RedisTokenCache` keeps the same data under the same keys as
:class:`~mcpauth.cache.FileTokenCache` (:func:`~mcpauth.cache.token_key` for tokens, the
provider's discovery key for discovery results), so a fleet of hosts behaves like one
client: one token request per expiry, whatever the number of hosts.

* It takes the caller's own client (redis-py's ``redis.Redis``, or anything with the same
  ``get``/``set``/``delete``/``eval`` methods); mcpauth itself does not depend on redis-py.
* An in-process :class:`~mcpauth.cache.MemoryTokenCache` sits in front: a warm call makes
  no Redis round trip. Redis is read on a miss, and always while the provider holds the
  fleet lock for a key (that is when another host's newer token matters).
* Entries are sealed with AES-256-GCM (NIST SP 800-38D) under a key the hosts share; the
  additional authenticated data binds each entry to its namespace, kind and full cache
  key, so an entry cannot be moved to another key. Whoever can write to Redis without
  holding the key cannot make a host use their token or follow their token endpoint: an
  entry that does not open is ignored (one warning) and overwritten by the next write.
* :meth:`RedisTokenCache.lock` is a fleet-wide single-flight lock: ``SET key owner NX PX``
  with a random owner, released by a compare-and-delete script (the pattern the Redis
  ``SET`` documentation describes for a single instance).
* Redis unreachable, slow or flushed: every call is bounded by the client's socket
  timeout; after one failure Redis is left alone for ``retry_interval`` seconds and the
  cache works in memory, with one warning per outage; tokens obtained meanwhile are
  written to Redis when it answers again.

Why the lock is correct enough: it saves token requests, it does not protect data. Every
entry is a complete, independently valid token; two holders (after the lock expired under a
slow holder, a failover that lost the lock, or a waiter that gave up after ``lock_wait``)
each make one token request and each write a valid token; the last write wins and both
tokens stay valid until they expire. The lock's expiry (``lock_ttl``) frees it when its
holder dies; the owner check means a late holder never deletes a lock someone else now
holds.
"""

import base64
import binascii
import contextlib
import hashlib
import importlib
import json
import logging
import os
import secrets
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

from . import _fork
from ._compat import require_cryptography
from .cache import (MemoryTokenCache, TokenCache, _entry_from_token, _is_number,
                    _token_from_entry, _warn)
from .errors import ConfigurationError, MissingDependencyError
from .grants import TokenResponse
from .transport import loads_json

__all__ = ["RedisTokenCache", "generate_cache_key", "load_cache_keys", "REDIS_URL_SCHEMES"]

logger = logging.getLogger("mcpauth")

#: URL schemes :meth:`RedisTokenCache.from_url` (and ``mcpauth --cache``) accept.
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")

_KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # NIST SP 800-38D §8.2.2: 96-bit random IVs
_KID_BYTES = 4
_PREFIX = "mcpauth1."  # version of the sealed format
_AAD_LABEL = b"mcpauth-redis-cache-v1"
_MAX_VALUE_BYTES = 1024 * 1024
_MAX_TTL = 30 * 86400.0  # seconds

# Compare-and-delete: the key goes only if it still holds the caller's value.
_DELETE_IF_EQUAL = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""

# Compare-and-set keeping the TTL (PTTL is -1 without one): a re-sealed entry replaces
# the entry it was read from, never a newer one.
_REPLACE_IF_EQUAL = """
if redis.call("get", KEYS[1]) ~= ARGV[1] then
    return 0
end
local ttl = redis.call("pttl", KEYS[1])
if ttl > 0 then
    redis.call("set", KEYS[1], ARGV[2], "PX", ttl)
elseif ttl == -1 then
    redis.call("set", KEYS[1], ARGV[2])
end
return 1
"""


def generate_cache_key() -> str:
    """A new random 256-bit cache key, base64url-encoded (give every host the same one)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")


def load_cache_keys(keys: Union[str, bytes, Sequence[Union[str, bytes]]]) -> List[bytes]:
    """Parse cache keys: the first seals new entries, every one opens entries.

    Args:
        keys: a str of base64 or base64url keys (32 bytes each) separated by whitespace or
            commas, as read from a key file or an environment variable; or a list of such
            strings or of 32-byte ``bytes``. List the new key first when rotating.

    Raises:
        ConfigurationError: no key, or a key that is not 32 bytes of base64 (the message
            says which position, never the key).
    """
    if isinstance(keys, (str, bytes)):
        items = [keys]  # type: List[Any]
    elif isinstance(keys, (list, tuple)):
        items = list(keys)
    else:
        raise ConfigurationError("cache keys must be a str, bytes, or a list of them")
    result = []  # type: List[bytes]
    for item in items:
        if isinstance(item, bytes) and len(item) == _KEY_BYTES and not isinstance(keys, bytes):
            result.append(item)
            continue
        if isinstance(item, bytes):
            try:
                item = item.decode("ascii")
            except UnicodeDecodeError:
                raise ConfigurationError("cache key {} is neither 32 raw bytes nor base64"
                                         .format(len(result) + 1)) from None
        if not isinstance(item, str):
            raise ConfigurationError("cache keys must be a str, bytes, or a list of them")
        for word in item.replace(",", " ").split():
            result.append(_decode_key(word, len(result) + 1))
    if not result:
        raise ConfigurationError("no cache key given")
    return result


def _decode_key(word: str, position: int) -> bytes:
    text = word.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _KEY_BYTES:
        raise ConfigurationError(
            "cache key {} is not 32 bytes of base64 (make one with "
            "mcpauth.rediscache.generate_cache_key() or `openssl rand -base64 32`)"
            .format(position))
    return raw


class _Sealer(object):
    """AES-256-GCM under the first key; opens with any key (rotation)."""

    def __init__(self, keys: List[bytes]) -> None:
        require_cryptography()
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aeads = [(hashlib.sha256(b"mcpauth cache key id\x00" + k).digest()[:_KID_BYTES],
                        AESGCM(k)) for k in keys]

    def seal(self, aad: bytes, plaintext: bytes) -> str:
        kid, aead = self._aeads[0]
        nonce = os.urandom(_NONCE_BYTES)
        blob = kid + nonce + aead.encrypt(nonce, plaintext, aad)
        return _PREFIX + base64.urlsafe_b64encode(blob).decode("ascii")

    def open(self, aad: bytes, value: Any) -> Optional[bytes]:
        """The plaintext, or None when ``value`` is not sealed by one of our keys for ``aad``."""
        return self.open_with(aad, value)[0]

    def open_with(self, aad: bytes, value: Any) -> Tuple[Optional[bytes], bool]:
        """The plaintext (or None) and whether it was sealed under an older key."""
        from cryptography.exceptions import InvalidTag

        none = None, False  # type: Tuple[Optional[bytes], bool]
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                return none
        if not isinstance(value, str) or not value.startswith(_PREFIX) \
                or len(value) > _MAX_VALUE_BYTES:
            return none
        try:
            blob = base64.urlsafe_b64decode(value[len(_PREFIX):].encode("ascii"))
        except (binascii.Error, ValueError):
            return none
        if len(blob) < _KID_BYTES + _NONCE_BYTES + 16:
            return none
        kid, nonce, sealed = (blob[:_KID_BYTES], blob[_KID_BYTES:_KID_BYTES + _NONCE_BYTES],
                              blob[_KID_BYTES + _NONCE_BYTES:])
        for index, (key_id, aead) in enumerate(self._aeads):
            if secrets.compare_digest(key_id, kid):
                try:
                    return bytes(aead.decrypt(nonce, sealed, aad)), index > 0
                except InvalidTag:
                    return none
        return none


class _Held(threading.local):
    """The keys whose fleet lock this thread is inside, with their nesting depth."""

    def __init__(self) -> None:
        self.keys = {}  # type: Dict[str, int]


class _Unavailable(Exception):
    """Redis did not answer (or is being left alone after it did not)."""


class RedisTokenCache(TokenCache):
    """A token cache in Redis, shared by every host of a fleet, sealed with AES-GCM.

    Every provider accepts it (``cache=RedisTokenCache(client, keys)``). Give every host
    the same ``keys`` and ``namespace``; a host with other keys sees the entries as absent.

    Redis keys are ``<namespace>:{<h>}:token``, ``<namespace>:{<h>}:lock`` and
    ``<namespace>:{<h>}:discovery``, where ``<h>`` is the first 128 bits (hex) of the
    SHA-256 of the entry's key (:func:`~mcpauth.cache.token_key`, or the provider's
    discovery key): the hash tag ``{<h>}`` puts a token and its lock in one Redis Cluster
    slot.
    Tokens carry a Redis TTL at their expiry; discovery results have none.

    Args:
        client: a redis-py ``redis.Redis`` (3.5 or later) or any client with its
            ``get``, ``set(name, value, nx=, px=)``, ``delete`` and ``eval`` methods. It
            must have a ``socket_timeout`` (and, over TCP, ``socket_connect_timeout``):
            that timeout bounds every Redis call. Each call may also be retried by the
            client's own retry policy; :meth:`from_url` builds a client without retries.
        keys: the AES-256 keys (see :func:`load_cache_keys`): the first seals, all open.
        namespace: prefix of every Redis key (no braces or whitespace).
        lock_ttl: seconds after which a fleet lock frees itself (its holder died).
        lock_wait: seconds a host waits for another host's token request before making
            its own (at worst one more token request).
        retry_interval: seconds Redis is left alone after a failed call.

    Raises:
        ConfigurationError: a bad key, namespace or number, or a client without timeouts.
        MissingDependencyError: ``cryptography`` is not installed.
    """

    def __init__(self, client: Any, keys: Union[str, bytes, Sequence[Union[str, bytes]]], *,
                 namespace: str = "mcpauth", lock_ttl: float = 15.0, lock_wait: float = 15.0,
                 retry_interval: float = 5.0) -> None:
        for method in ("get", "set", "delete", "eval"):
            if not callable(getattr(client, method, None)):
                raise ConfigurationError("client must be a redis-py Redis client (it has no "
                                         "{}() method)".format(method))
        _check_timeouts(client)
        if not isinstance(namespace, str) or not namespace \
                or any(c in namespace for c in "{} \t\r\n\x00"):
            raise ConfigurationError("namespace must be a non-empty string without braces "
                                     "or whitespace")
        for name, value in (("lock_ttl", lock_ttl), ("lock_wait", lock_wait),
                            ("retry_interval", retry_interval)):
            if not _is_number(value) or value < 0 or (name == "lock_ttl" and value < 0.001):
                raise ConfigurationError("{} must be a non-negative number of seconds"
                                         .format(name))
        self._sealer = _Sealer(load_cache_keys(keys))
        self._client = client
        self.namespace = namespace
        self.lock_ttl = float(lock_ttl)
        self.lock_wait = float(lock_wait)
        self.retry_interval = float(retry_interval)
        self._memory = MemoryTokenCache()
        self._state = threading.Lock()
        self._down_until = 0.0  # monotonic; Redis is not called before it
        self._outage = False  # a warning was given and Redis has not answered since
        self._pending = {}  # type: Dict[str, str]  # key -> kind, written while down
        self._flushing = False
        self._ignored: Set[str] = set()  # Redis keys already warned about
        self._held = _Held()
        _fork.register(self)

    def _after_fork(self) -> None:
        # A forked child: a new lock (a parent's thread may hold the old one), and no
        # flush of the parent's is running in it.
        self._state = threading.Lock()
        self._flushing = False

    @classmethod
    def from_url(cls, url: str, keys: Union[str, bytes, Sequence[Union[str, bytes]]], *,
                 timeout: float = 1.0, **options: Any) -> "RedisTokenCache":
        """A cache on a new redis-py client for ``url`` (``redis://``, ``rediss://``,
        ``unix://``), each call bounded by ``timeout`` seconds and never retried.

        Other keyword arguments go to :class:`RedisTokenCache`.

        Raises:
            MissingDependencyError: redis-py is not installed.
            ConfigurationError: a bad URL, timeout or option.
        """
        if not isinstance(url, str) or not url.startswith(REDIS_URL_SCHEMES):
            raise ConfigurationError("the Redis URL must start with redis://, rediss:// "
                                     "or unix://")
        if not _is_number(timeout) or timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        try:
            redis = importlib.import_module("redis")
        except ImportError as exc:
            raise MissingDependencyError(
                "a Redis token cache needs redis-py (pip install 'mcpauth[redis]')",
                package="redis") from exc
        kwargs = {"socket_timeout": float(timeout)}  # type: Dict[str, Any]
        if not url.startswith("unix://"):
            kwargs["socket_connect_timeout"] = float(timeout)
        try:
            backoff = importlib.import_module("redis.backoff")
            retry = importlib.import_module("redis.retry")
        except ImportError:  # redis-py 3.x never retries on its own
            pass
        else:
            kwargs["retry"] = retry.Retry(backoff.NoBackoff(), 0)
        try:
            client = redis.Redis.from_url(url, **kwargs)
        except ValueError:
            raise ConfigurationError("the Redis URL cannot be parsed") from None
        return cls(client, keys, **options)

    def __repr__(self) -> str:
        return "RedisTokenCache(namespace={!r})".format(self.namespace)

    # -- names and sealing -------------------------------------------------------------

    def _name(self, key: str, kind: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return "{}:{{{}}}:{}".format(self.namespace, digest, kind)

    def _aad(self, key: str, kind: str) -> bytes:
        return b"\x00".join((_AAD_LABEL, self.namespace.encode("utf-8"),
                             kind.encode("ascii"), key.encode("utf-8")))

    def _open(self, key: str, kind: str, name: str, value: Any, reseal: bool = False) -> Any:
        """The JSON stored under ``name``, or None (with one warning) if it does not open.

        With ``reseal``, an entry sealed under an older key is sealed again under the
        newest one in place (same TTL; only if unchanged), so that entries without a TTL
        (discovery results, tokens without expiry) do not keep the old key needed.
        """
        aad = self._aad(key, kind)
        plaintext, older = self._sealer.open_with(aad, value)
        if plaintext is not None and older and reseal:
            try:
                self._call("eval", _REPLACE_IF_EQUAL, 1, name, value,
                           self._sealer.seal(aad, plaintext))
            except _Unavailable:
                pass
        document = None  # type: Any
        if plaintext is not None:
            try:
                document = loads_json(plaintext.decode("utf-8"))
            except ValueError:
                document = None
        if document is None or not isinstance(document, dict):
            with self._state:
                first = name not in self._ignored
                self._ignored.add(name)
            if first:
                _warn("ignoring the Redis token cache entry {}: it does not open with the "
                      "configured keys (tampered with, or written with another key); it is "
                      "never used and will be replaced".format(name))
            return None
        return document

    # -- Redis calls -------------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        _fork.check()  # Python 3.6 has no fork hook: a new pid resets the lock here
        if time.monotonic() < self._down_until:
            raise _Unavailable()
        try:
            result = getattr(self._client, method)(*args, **kwargs)
        except Exception as exc:  # any client error: the cache goes on in memory
            self._mark_down(exc)
            raise _Unavailable() from None
        if self._outage:
            self._mark_up()
        return result

    def _mark_down(self, exc: BaseException) -> None:
        with self._state:
            self._down_until = time.monotonic() + self.retry_interval
            first = not self._outage
            self._outage = True
        if first:
            # The type only: a client's message may name the server's address or user.
            _warn("the Redis token cache is unavailable ({}); going on in memory and trying "
                  "again every {:g} s".format(type(exc).__name__, self.retry_interval))

    def _mark_up(self) -> None:
        with self._state:
            if not self._outage:
                return
            self._outage = False
        logger.info("the Redis token cache is reachable again")
        self._flush()

    def _flush(self) -> None:
        """Write what was stored while Redis was down, unless Redis has newer entries."""
        with self._state:
            if self._flushing or not self._pending:
                return
            self._flushing = True
            pending = dict(self._pending)
        try:
            for key, kind in pending.items():
                try:
                    if kind == "token":
                        token = self._memory.get_token(key)
                        if token is not None:
                            self._put_token(key, token, only_new=True)
                    else:
                        value = self._memory.get_discovery(key)
                        if value is not None:
                            self._put_discovery(key, value, only_new=True)
                except _Unavailable:
                    return
                with self._state:
                    if self._pending.get(key) == kind:
                        del self._pending[key]
        finally:
            with self._state:
                self._flushing = False

    def _retry_pending(self) -> None:
        # On the warm path only while something waits to be written: one check, no I/O.
        if self._pending and time.monotonic() >= self._down_until:
            self._flush()

    def _holding(self, key: str) -> bool:
        return key in self._held.keys

    # -- tokens ------------------------------------------------------------------------

    def get_token(self, key: str) -> Optional[TokenResponse]:
        """The token for ``key``: from memory, else from Redis (Redis first while this
        thread holds :meth:`lock` for ``key``, to see another host's newer token)."""
        if not self._holding(key):
            token = self._memory.get_token(key)
            if token is not None:
                self._retry_pending()
                return token
        try:
            fetched = self._fetch_token(key)
        except _Unavailable:
            fetched = None
        if fetched is None:
            return self._memory.get_token(key)
        self._memory.set_token(key, fetched)
        return fetched

    def _fetch_token(self, key: str) -> Optional[TokenResponse]:
        name = self._name(key, "token")
        value = self._call("get", name)
        if value is None:
            return None
        entry = self._open(key, "token", name, value, reseal=True)
        return _token_from_entry(entry) if entry is not None else None

    def set_token(self, key: str, token: TokenResponse) -> None:
        """Store ``token`` in memory and in Redis (TTL at its expiry)."""
        self._memory.set_token(key, token)
        self._share(key, "token", lambda: self._put_token(key, token))

    def _share(self, key: str, kind: str, put: Callable[[], None]) -> None:
        """Run the Redis write ``put``; while Redis is down, remember ``key`` for later."""
        try:
            put()
        except _Unavailable:
            with self._state:
                self._pending[key] = kind
            return
        with self._state:
            self._pending.pop(key, None)

    def _put_token(self, key: str, token: TokenResponse, only_new: bool = False) -> None:
        expires_at = token.expires_at
        px = None
        if expires_at is not None:
            # Capped, so an absurd expires_in cannot make Redis refuse the TTL.
            px = int(min(expires_at - time.time(), _MAX_TTL) * 1000)
            if px <= 0:
                return  # expired on the wall clock: nothing to share
        value = self._sealer.seal(self._aad(key, "token"),
                                  json.dumps(_entry_from_token(token)).encode("utf-8"))
        self._call("set", self._name(key, "token"), value, px=px, nx=only_new or None)

    def delete_token(self, key: str, access_token: Optional[str] = None) -> None:
        """Forget the token under ``key`` here and in Redis (only if it is ``access_token``,
        when given: another host may already have stored its successor)."""
        self._memory.delete_token(key, access_token)
        with self._state:
            self._pending.pop(key, None)
        name = self._name(key, "token")
        try:
            if access_token is None:
                self._call("delete", name)
                return
            value = self._call("get", name)
            if value is None:
                return
            entry = self._open(key, "token", name, value)
            current = _token_from_entry(entry) if entry is not None else None
            if current is not None and current.access_token == access_token:
                self._call("eval", _DELETE_IF_EQUAL, 1, name, value)
        except _Unavailable:
            pass

    # -- discovery ---------------------------------------------------------------------

    def get_discovery(self, server_url: str) -> Optional[Dict[str, Any]]:
        """Discovery results for ``server_url``: from memory, else from Redis."""
        value = self._memory.get_discovery(server_url)
        if value is not None:
            self._retry_pending()
            return value
        name = self._name(server_url, "discovery")
        try:
            raw = self._call("get", name)
        except _Unavailable:
            return None
        if raw is None:
            return None
        document = self._open(server_url, "discovery", name, raw, reseal=True)
        if document is None:
            return None
        self._memory.set_discovery(server_url, document)
        return dict(document)

    def set_discovery(self, server_url: str, value: Dict[str, Any]) -> None:
        """Store discovery results (a JSON-able dict) here and in Redis."""
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ConfigurationError("discovery results must be JSON-serialisable") from None
        self._memory.set_discovery(server_url, value)
        self._share(server_url, "discovery", lambda: self._put_discovery(server_url, value))

    def _put_discovery(self, server_url: str, value: Dict[str, Any],
                       only_new: bool = False) -> None:
        sealed = self._sealer.seal(self._aad(server_url, "discovery"),
                                   json.dumps(value, sort_keys=True).encode("utf-8"))
        self._call("set", self._name(server_url, "discovery"), sealed, nx=only_new or None)

    def delete_discovery(self, server_url: str) -> None:
        """Forget the discovery results for ``server_url`` here and in Redis."""
        self._memory.delete_discovery(server_url)
        with self._state:
            self._pending.pop(server_url, None)
        try:
            self._call("delete", self._name(server_url, "discovery"))
        except _Unavailable:
            pass

    # -- the fleet lock ----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Held while a token for ``key`` is requested, by one thread of one host.

        ``SET <lock> <owner> NX PX lock_ttl``; others poll it, and go on as soon as the
        token entry changes (the holder stored its token) or after ``lock_wait`` seconds
        (a warning; at worst one more token request). With Redis down there is no fleet
        lock. Re-entrant within a thread.
        """
        held = self._held.keys
        if key in held:
            held[key] += 1
            try:
                yield
            finally:
                held[key] -= 1
            return
        name = self._name(key, "lock")
        owner = secrets.token_hex(16)
        acquired = self._acquire(key, name, owner)
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
            if acquired:
                try:
                    self._call("eval", _DELETE_IF_EQUAL, 1, name, owner)
                except _Unavailable:
                    pass  # it expires after lock_ttl

    def _acquire(self, key: str, name: str, owner: str) -> bool:
        """Take the lock; False to go on without it: Redis is down, the wait timed out,
        or the token entry changed while waiting (the holder wrote its token: the waiters
        read it at once instead of taking the lock one after another)."""
        deadline = time.monotonic() + self.lock_wait
        pause = 0.005
        token_name = self._name(key, "token")
        baseline = None  # type: Any
        first = True
        while True:
            try:
                if self._call("set", name, owner, nx=True, px=int(self.lock_ttl * 1000)):
                    return True
                value = self._call("get", token_name)
            except _Unavailable:
                return False
            if first:
                baseline, first = value, False
            elif value != baseline:
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _warn("another host has held the Redis token cache lock {} for more than "
                      "{:g} s; going on without it".format(name, self.lock_wait))
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)


def _check_timeouts(client: Any) -> None:
    """Refuse a redis-py client whose calls could block for ever."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return  # not redis-py's pool: the caller vouches for its timeouts
    needed = ["socket_timeout"]
    if "host" in kwargs:
        needed.append("socket_connect_timeout")
    for option in needed:
        value = kwargs.get(option)  # type: Any
        if not _is_number(value) or float(value) <= 0:
            raise ConfigurationError(
                "the Redis client has no {0}: a Redis that hangs would hang every token "
                "request (pass {0}=SECONDS to redis.Redis, or use "
                "RedisTokenCache.from_url)".format(option))
