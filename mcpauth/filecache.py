"""The token store in a file shared by processes: a cron job's warm start.

:class:`FileTokenCache` keeps what :class:`~mcpauth.cache.MemoryTokenCache` keeps, under
the same keys (:func:`~mcpauth.cache.token_key`, :func:`~mcpauth.cache.discovery_key`), in
a 0600 JSON file, so a cron job with a valid cached token sends only its MCP request. The
file is a trust boundary (OpenSSH StrictModes): it is used only when it, its directory and
every ancestor belong to the user (or root) and no one else can write them. Imported when
a FileTokenCache is first used (``mcpauth.FileTokenCache``, ``mcpauth.cache.FileTokenCache``
and this module are the same class).
"""

import contextlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import _fork
from .cache import (MemoryTokenCache, TokenCache, _entry_from_token, _is_number,
                    _token_from_entry, _warn)
from .errors import ConfigurationError, clean_peer_text
from .grants import TokenResponse
from .transport import loads_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

__all__ = ["FileTokenCache", "FILE_FORMAT", "FILE_VERSION", "DEFAULT_LOCK_TIMEOUT",
           "MAX_FILE_BYTES"]

logger = logging.getLogger("mcpauth")

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

#: The ``format`` member of a cache file; anything else is a foreign file.
FILE_FORMAT = "mcpauth-token-cache"
#: The version of the cache file layout written by this module.
FILE_VERSION = 1
#: Seconds :meth:`FileTokenCache.lock` waits for another process before going on unlocked.
DEFAULT_LOCK_TIMEOUT = 60.0
#: A cache file larger than this is not read (it is not one of ours).
MAX_FILE_BYTES = 8 * 1024 * 1024

class _ProcessLock(object):
    """One lock file, shared by every FileTokenCache of this process that uses it.

    Threads are serialised by an RLock; the first (outermost) acquisition in a thread
    also takes an exclusive ``flock`` on the lock file, so other processes wait.
    ``flock`` belongs to the open file description, so one descriptor per process is
    the only way nesting and several cache objects on one path stay safe.

    Both waits share one ``timeout``: a thread that cannot get the RLock in time (another
    thread is inside a slow token request, an assertion callback waiting on an IdP, say)
    goes on without it, exactly as after a stuck process, and :meth:`acquire` says so.
    That wait happens at most once per process: once a wait has timed out, later
    acquisitions only try, without waiting (a stuck process stays stuck; a cold run
    takes the lock several times and must not wait ``timeout`` for each).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.rlock = threading.RLock()
        self.depth = 0  # touched only by the thread holding rlock
        self.fd = None  # type: Optional[int]
        self.gave_up = False  # a wait timed out: do not wait again in this process
        self.no_flock = False  # flock failed (ENOLCK): threads only from now on
        #: Why the lock file cannot be opened (the cache is then unusable), or None.
        self.unusable = None  # type: Optional[str]

    def _gave_up(self, who: str, timeout: float) -> None:
        if self.gave_up:
            logger.debug("the token cache lock %s is still held by %s; going on without "
                         "it", self.path, who)
            return
        self.gave_up = True
        _warn("{} has held the token cache lock {} for more than {:g} s; going on "
              "without it, and without waiting for it again in this process".format(
                  who, self.path, timeout))

    def _after_fork(self) -> None:
        # The child holds nothing: the parent's thread that did is not in it (the
        # inherited descriptor shares the parent's flock, so it is only closed).
        self.rlock = threading.RLock()
        self.depth = 0
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def acquire(self, timeout: float) -> bool:
        """Take the lock; False when it went on without it (pass that to release)."""
        _fork.check()
        if self.gave_up:
            timeout = 0.0
        deadline = time.monotonic() + timeout
        if not self.rlock.acquire(timeout=timeout):
            self._gave_up("another thread", timeout)
            return False
        if self.depth == 0 and self.unusable is None and not self.no_flock:
            try:
                self.fd = self._lock_file(max(deadline - time.monotonic(), 0.0))
            except BaseException:
                self.rlock.release()
                raise
            if self.fd is None and self.unusable is None and not self.no_flock:
                self._gave_up("another process", timeout)
        self.depth += 1
        return True

    def _lock_file(self, timeout: float) -> Optional[int]:
        """Open the lock file (0600) and lock it exclusively; None when that is impossible.

        Waits up to ``timeout`` seconds. A process that holds the lock longer than that
        is stuck (token requests time out well before), so the caller goes on without
        the lock: the worst outcome is one extra token request, never a wrong token.
        """
        try:
            _make_parent(self.path)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
        except OSError as exc:
            self.unusable = "cannot open its lock file {} ({})".format(
                self.path, _os_reason(exc))
            return None
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            try:
                if _try_lock(fd):
                    return fd
            except OSError as exc:  # e.g. ENOLCK on a network filesystem without locks
                os.close(fd)
                self.no_flock = True
                _warn("cannot lock the token cache lock file {} ({}); going on without the "
                      "cross-process lock".format(self.path, _os_reason(exc)))
                return None
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def release(self, held: bool = True) -> None:
        if not held:
            return
        self.depth -= 1
        try:
            if self.depth == 0 and self.fd is not None:
                fd, self.fd = self.fd, None
                _unlock_file(fd)
        finally:
            self.rlock.release()


_PROCESS_LOCKS = {}  # type: Dict[str, _ProcessLock]
_PROCESS_LOCKS_GUARD = threading.Lock()


@_fork.on_fork
def _process_locks_after_fork() -> None:
    global _PROCESS_LOCKS_GUARD
    _PROCESS_LOCKS_GUARD = threading.Lock()
    for lock in list(_PROCESS_LOCKS.values()):
        lock._after_fork()


def _process_lock(path: str) -> _ProcessLock:
    key = os.path.normcase(os.path.abspath(path))
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.get(key)
        if lock is None:
            lock = _PROCESS_LOCKS[key] = _ProcessLock(path)
        return lock


def _try_lock(fd: int) -> bool:
    """Try once to take the exclusive lock on ``fd``; False if another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, InterruptedError):
            return False
        return True
    if msvcrt is not None:  # pragma: no cover - Windows
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    return True  # pragma: no cover - no locking primitive: single-process use only


def _unlock_file(fd: int) -> None:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        elif msvcrt is not None:  # pragma: no cover - Windows
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)  # closing releases the lock anyway


def _make_parent(path: str) -> None:
    """Create the missing directories above ``path``, each one 0700.

    os.makedirs applies its mode only to the last directory; the ones it creates on the
    way get 0777 minus the umask, which is 0777 under a umask of 0. So walk up to the
    first existing directory and create the missing ones top down.
    """
    parent = os.path.dirname(os.path.abspath(path))
    missing: List[str] = []
    while not os.path.isdir(parent):
        missing.append(parent)
        above = os.path.dirname(parent)
        if above == parent:  # pragma: no cover - the root always exists
            break
        parent = above
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise  # a file is in the way: the caller reports the OSError


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _owner_problem(what: str, st: os.stat_result) -> Optional[str]:
    """Why a file or directory with status ``st`` is not trusted, or None (POSIX only).

    OpenSSH's StrictModes rule: it must belong to this user (or root), and no one else
    may write it (no group or other write bit).
    """
    if os.name != "posix":  # pragma: no cover - no POSIX owners and modes
        return None
    if st.st_uid not in (os.geteuid(), 0):
        return "{} belongs to another user (uid {})".format(what, st.st_uid)
    if st.st_mode & 0o022:
        return "{} can be written by {} (mode {:04o})".format(
            what, "others" if st.st_mode & 0o002 else "its group",
            stat.S_IMODE(st.st_mode))
    return None


def _directory_problem(path: str) -> Optional[str]:
    """Why the directories holding ``path`` are not trusted, or None.

    The cache's own directory must be this user's (or root's) and writable by no one
    else: whoever can write it can put a file, its lock or a symbolic link where the
    cache will look. Every directory above it must be this user's or root's too, and
    writable by no one else unless it has the sticky bit (like ``/tmp``), which stops
    others from renaming the entries they do not own. Symbolic links in the path are
    resolved first, and the directories the links lead to are the ones checked.
    """
    if os.name != "posix":  # pragma: no cover - no POSIX owners and modes
        return None
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    own = True
    while True:
        try:
            st = os.stat(directory)
        except OSError as exc:
            return "cannot check directory {} ({})".format(directory, _os_reason(exc))
        if own or not st.st_mode & stat.S_ISVTX:
            problem = _owner_problem("directory " + directory, st)
            if problem is not None:
                return problem
        elif st.st_uid not in (os.geteuid(), 0):
            return "directory {} belongs to another user (uid {})".format(
                directory, st.st_uid)
        above = os.path.dirname(directory)
        if above == directory:
            return None
        directory, own = above, False


class _Document(object):
    """The parsed content of a cache file."""

    __slots__ = ("tokens", "discovery")

    def __init__(self, tokens: Optional[Dict[str, Dict[str, Any]]] = None,
                 discovery: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        self.tokens = dict(tokens or {})
        self.discovery = dict(discovery or {})


def _parse_document(raw: bytes) -> Tuple[Optional[_Document], Optional[str]]:
    """Parse a cache file: (document, None) or (None, why it cannot be used)."""
    if len(raw) > MAX_FILE_BYTES:
        return None, "it is larger than {} bytes".format(MAX_FILE_BYTES)
    try:
        doc = loads_json(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSON errors are ValueErrors
        return None, "it is not JSON"
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        return None, "it is not an mcpauth token cache"
    version = doc.get("version")
    if type(version) is not int or version != FILE_VERSION:
        return None, "it has version {!r}, not {}".format(
            clean_peer_text(str(version), 20), FILE_VERSION)
    tokens = doc.get("tokens", {})
    discovery = doc.get("discovery", {})
    if not isinstance(tokens, dict) or not isinstance(discovery, dict):
        return None, "its tokens or discovery member is not an object"
    for entry in tokens.values():
        if _token_from_entry(entry) is None:
            return None, "it holds a malformed token entry"
    for value in discovery.values():
        if not isinstance(value, dict):
            return None, "it holds a malformed discovery entry"
    return _Document(tokens, discovery), None


class FileTokenCache(TokenCache):
    """A token cache in a JSON file, shared by processes: a cron job's warm start.

    With a valid token and the discovery results on disk, a new process sends one HTTP
    request, the MCP call itself: no metadata fetches, no token request. Every provider
    accepts it (``cache=FileTokenCache(path)``).

    * Entries are keyed by (issuer, resource, client_id, scope, credential
      fingerprint) (:func:`token_key`), so one file serves several servers, clients,
      scopes and credentials without mixing them up (MCP "Token Handling": tokens go
      only to the server they were issued for; a wrong or rotated secret or key never
      reuses a token another one obtained).
    * It is a trust boundary, like OpenSSH's ``StrictModes``: the file must be a
      regular file (not a symbolic link) owned by this user (or root) that no one else
      can write, in a directory owned by this user (or root) that no one else can
      write, below directories owned by this user or root that no one else can write
      unless they have the sticky bit (``/tmp``). Otherwise the file is neither read nor
      written: one :class:`~mcpauth.errors.MCPAuthWarning` (and a log warning) says why,
      and the object keeps tokens in memory for the rest of the process. A file that
      others can read (but not write) is made 0600, with one warning, and used.
    * It holds access tokens with their absolute expiry (``received_at`` and
      ``expires_at`` on the ``time.time()`` clock) and discovery results. Never a
      client secret, private key, assertion or refresh token: the providers never give
      it one, and refresh tokens are dropped (client credentials grants are re-run).
    * The file is created with mode 0600 and replaced atomically (written to a
      temporary file in the same directory, fsynced, then ``os.replace``), so a reader
      never sees half a file. A missing parent directory is created with mode 0700.
      Expired tokens (other than the one being stored) are dropped whenever the file
      is written.
    * Every read re-reads the file, so tokens written by other processes are seen.
    * :meth:`lock` takes an exclusive lock on ``path + ".lock"`` (``fcntl.flock``; on
      Windows ``msvcrt.locking``), held while a provider requests a token: two
      processes that start together make one token request; the second one finds the
      first one's token when it gets the lock. Writes take the same lock briefly, so
      concurrent writers never lose each other's entries. The lock is re-entrant
      within a thread and shared by every FileTokenCache on the same path in a process,
      so threads of one process queue for it too (it is one lock for every key). After
      ``lock_timeout`` seconds of waiting, for a stuck process or for another thread in
      a slow token request (an assertion callback waiting on an IdP), it goes on
      unlocked with a warning: at worst one extra token request or a lost cache entry,
      never a wrong token. That wait happens once per process: afterwards the lock is
      only tried, never waited for.
    * A corrupt or foreign file (not JSON, JSON nested too deep to parse, another format
      or version, malformed entries, an access token that is not RFC 6749 Appendix A.12
      printable ASCII) is ignored with a :class:`~mcpauth.errors.MCPAuthWarning` and a log
      warning, and rewritten by the next write; it never raises. A file that cannot be
      written (read-only file system, full disk, no permission) or whose lock file
      cannot be opened is reported once the same way; the object then keeps what it
      had read and what it is given in memory, for the rest of the process.

    The file holds bearer tokens: anyone who can read it can use them until they
    expire. Keep it in a directory only the job's user can read (MCP security best
    practices, "Token Theft"; RFC 6750 §5.3 "Safeguard bearer tokens"). Windows
    support (``msvcrt.locking``, no POSIX modes) is best effort and untested.

    Args:
        path: the cache file (str or ``os.PathLike``); a leading ``~`` is the home
            directory; made absolute at once.
        lock_timeout: seconds to wait for the lock held by another process or thread.

    Raises:
        ConfigurationError: ``path`` is not a str path, or is a directory;
            ``lock_timeout`` is negative.
    """

    def __init__(self, path: Any, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        try:
            fspath = os.fspath(path)
        except TypeError:
            raise ConfigurationError("path must be a str or os.PathLike") from None
        if not isinstance(fspath, str) or not fspath:
            raise ConfigurationError("path must be a non-empty str or str os.PathLike")
        # "~/.cache/mcpauth/tokens.json" means the home directory, as in a shell.
        fspath = os.path.expanduser(fspath)
        if os.path.isdir(fspath):
            raise ConfigurationError("the token cache path is a directory; give a file "
                                     "name inside it")
        if not _is_number(lock_timeout) or lock_timeout < 0:
            raise ConfigurationError("lock_timeout must be a non-negative number")
        # Absolute from the start, so that a later chdir() changes nothing.
        self.path = os.path.abspath(fspath)
        self.lock_timeout = float(lock_timeout)
        self._lock_path = self.path + ".lock"
        self._process_lock = _process_lock(self._lock_path)
        self._state_lock = threading.Lock()
        _fork.register(self)
        self._last_raw = None  # type: Optional[bytes]
        self._last_doc = _Document()
        self._directories_trusted = False
        self._tightened = False
        #: Set once the file is given up on (untrusted or unwritable): from then on this
        #: object is an in-memory cache for the rest of the process.
        self._memory = None  # type: Optional[MemoryTokenCache]

    def __repr__(self) -> str:
        return "FileTokenCache({!r})".format(self.path)

    def _after_fork(self) -> None:
        self._state_lock = threading.Lock()

    # -- trust and fallback ----------------------------------------------------------

    def _give_up(self, why: str, doc: Optional[_Document] = None) -> MemoryTokenCache:
        """Use memory from now on, seeded with ``doc`` (content known to be good)."""
        with self._state_lock:
            memory = self._memory
            if memory is not None:
                return memory
            memory = MemoryTokenCache()
            for key, entry in (doc.tokens if doc is not None else {}).items():
                token = _token_from_entry(entry)
                if token is not None:
                    memory.set_token(key, token)
            for server, value in (doc.discovery if doc is not None else {}).items():
                memory.set_discovery(server, value)
            self._memory = memory
        _warn("not using the token cache {}: {}; tokens are kept in memory for the rest of "
              "this run".format(self.path, why))
        return memory

    def _check_directories(self) -> Optional[str]:
        if self._directories_trusted:
            return None
        problem = _directory_problem(self.path)
        if problem is None:
            self._directories_trusted = True
        return problem

    def _check_file(self, fd: int) -> Optional[str]:
        """Why the open cache file is not trusted, or None; tightens a readable one."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "it is not a regular file"
        problem = _owner_problem("it", st)
        if problem is not None:
            return problem
        if os.name == "posix" and st.st_mode & 0o077:
            try:
                os.fchmod(fd, 0o600)
            except OSError as exc:
                return "it is readable by others (mode {:04o}) and cannot be made 0600 " \
                       "({})".format(stat.S_IMODE(st.st_mode), _os_reason(exc))
            if not self._tightened:
                self._tightened = True
                _warn("the token cache {} was readable by others (mode {:04o}); it is now "
                      "0600, but the tokens in it may have been read".format(
                          self.path, stat.S_IMODE(st.st_mode)))
        return None

    # -- reading ---------------------------------------------------------------------

    def _read(self) -> Optional[_Document]:
        """The file's current content (empty when missing, corrupt or foreign), or None
        when the file is given up on (then ``self._memory`` is the store)."""
        if self._memory is not None:
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK
                         | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            if os.path.islink(self.path):
                self._give_up("it is a symbolic link", self._last_good())
                return None
            with self._state_lock:
                changed = self._last_raw is not None
                self._last_raw = None
                self._last_doc = _Document()
            if changed:
                _warn("cannot read the token cache {} ({}); ignoring it".format(
                    self.path, _os_reason(exc)))
            return _Document()
        else:
            try:
                problem = self._check_file(fd) or self._check_directories()
                if problem is not None:
                    # What was read while the file was trusted stays usable.
                    self._give_up(problem, self._last_good())
                    return None
                chunks = []
                size = 0
                while size <= MAX_FILE_BYTES:
                    chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                raw = b"".join(chunks)
            except OSError as exc:
                raw = b""
                _warn("cannot read the token cache {} ({}); ignoring it".format(
                    self.path, _os_reason(exc)))
            finally:
                os.close(fd)
        with self._state_lock:
            if raw == self._last_raw:
                return self._last_doc
        doc = _Document()
        if raw != b"":
            parsed, problem = _parse_document(raw)
            if parsed is None:
                _warn("ignoring the token cache {}: {}; it will be rewritten".format(
                    self.path, problem))
            else:
                doc = parsed
        with self._state_lock:
            self._last_raw = raw
            self._last_doc = doc
        return doc

    def _memory_store(self) -> MemoryTokenCache:
        memory = self._memory
        assert memory is not None
        return memory

    def get_token(self, key: str) -> Optional[TokenResponse]:
        """The stored token for ``key``, read from the file now, or None."""
        doc = self._read()
        if doc is None:
            return self._memory_store().get_token(key)
        return _token_from_entry(doc.tokens.get(key))

    def get_discovery(self, server_url: str) -> Optional[Dict[str, Any]]:
        """The stored discovery results for ``server_url``, read from the file now."""
        doc = self._read()
        if doc is None:
            return self._memory_store().get_discovery(server_url)
        value = doc.discovery.get(server_url)
        return dict(value) if value is not None else None

    # -- writing ---------------------------------------------------------------------

    def set_token(self, key: str, token: TokenResponse) -> None:
        """Store ``token`` under ``key`` (read-modify-write under the file lock)."""
        with self.lock(key):
            doc = self._read()
            if doc is None:
                self._memory_store().set_token(key, token)
                return
            tokens = dict(doc.tokens)
            tokens[key] = _entry_from_token(token)
            self._write(_Document(tokens, doc.discovery), keep=key)

    def delete_token(self, key: str, access_token: Optional[str] = None) -> None:
        """Forget the token under ``key`` (only if it is ``access_token``, when given)."""
        with self.lock(key):
            doc = self._read()
            if doc is None:
                self._memory_store().delete_token(key, access_token)
                return
            current = _token_from_entry(doc.tokens.get(key))
            if current is None or (access_token is not None
                                   and current.access_token != access_token):
                return
            tokens = dict(doc.tokens)
            del tokens[key]
            self._write(_Document(tokens, doc.discovery))

    def set_discovery(self, server_url: str, value: Dict[str, Any]) -> None:
        """Store discovery results (a JSON-able dict) for ``server_url``."""
        with self.lock(server_url):
            doc = self._read()
            if doc is None:
                self._memory_store().set_discovery(server_url, value)
                return
            discovery = dict(doc.discovery)
            discovery[server_url] = dict(value)
            self._write(_Document(doc.tokens, discovery))

    def delete_discovery(self, server_url: str) -> None:
        """Forget the discovery results for ``server_url``."""
        with self.lock(server_url):
            doc = self._read()
            if doc is None:
                self._memory_store().delete_discovery(server_url)
                return
            if server_url not in doc.discovery:
                return
            discovery = dict(doc.discovery)
            del discovery[server_url]
            self._write(_Document(doc.tokens, discovery))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the cache file's exclusive lock (every key shares the one lock file).

        Waits at most ``lock_timeout`` seconds, for other threads of this process and
        for other processes together, then goes on unlocked with a warning; after that
        the process no longer waits for this lock. Once the file is given up on, only
        threads of this process are serialised.
        """
        if self._memory is None:
            problem = self._prepare_directories()
            if problem is not None:
                self._give_up(problem, self._last_good())
        held = self._process_lock.acquire(self.lock_timeout)
        try:
            unusable = self._process_lock.unusable
            if unusable is not None and self._memory is None:
                self._give_up(unusable, self._last_good())
            yield
        finally:
            self._process_lock.release(held)

    def _last_good(self) -> _Document:
        with self._state_lock:
            return self._last_doc

    def _prepare_directories(self) -> Optional[str]:
        """Create the missing directories (0700) and check them; why not, or None."""
        if self._directories_trusted:
            return None
        try:
            _make_parent(self.path)
        except OSError as exc:
            return "cannot create its directory ({})".format(_os_reason(exc))
        return self._check_directories()

    def _write(self, doc: _Document, keep: Optional[str] = None) -> None:
        now = time.time()
        tokens = {}
        for key, entry in doc.tokens.items():
            token = _token_from_entry(entry)
            if token is None:
                continue
            expires_at = token.expires_at
            if key != keep and expires_at is not None and expires_at <= now:
                # Expired: drop it. The entry being stored is kept whatever its times
                # say (a provider with an injected clock decides expiry itself).
                continue
            tokens[key] = entry
        payload = {"format": FILE_FORMAT, "version": FILE_VERSION,
                   "tokens": tokens, "discovery": doc.discovery}
        try:
            raw = (json.dumps(payload, sort_keys=True, indent=1) + "\n").encode("utf-8")
        except (TypeError, ValueError):
            raise ConfigurationError("discovery results must be JSON-serialisable") from None
        try:
            _atomic_write(self.path, raw)
        except OSError as exc:
            # Read-only file system, full disk, a directory in the way: the run goes on
            # with what it has, in memory, and says so once.
            self._give_up("cannot write it ({})".format(_os_reason(exc)),
                          _Document(tokens, doc.discovery))
            return
        with self._state_lock:
            self._last_raw = raw
            self._last_doc = _Document(tokens, doc.discovery)


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to a new 0600 file beside ``path``, fsync it, and rename it over."""
    _make_parent(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, ".{}.{}.tmp".format(name, secrets.token_hex(6)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
                 | getattr(os, "O_BINARY", 0), 0o600)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # whatever the umask did
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        _replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):
        # Make the rename itself durable (best effort; not every filesystem allows it).
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)


def _replace(src: str, dst: str) -> None:
    # Windows refuses to replace a file another process has open for a moment; retry.
    for attempt in range(10):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 9:
                raise
            time.sleep(0.02)  # pragma: no cover - Windows
