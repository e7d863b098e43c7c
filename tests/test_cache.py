"""Token caches: FileTokenCache (the cron job's cross-process cache) and its contract.

Real files in tmp_path; real processes for the cross-process lock; a real loopback stack
(mcpauth.testing) for the provider tests.
"""

import importlib.util
import json
import logging
import os
import pathlib
import stat
import subprocess
import sys
import threading
import time
import warnings

import pytest

from mcpauth import ClientCredentialsProvider, ConfigurationError, MCPAuthWarning
from mcpauth.cache import (FILE_FORMAT, FILE_VERSION, FileTokenCache, MemoryTokenCache,
                           TokenCache, token_key)
from mcpauth.grants import TokenResponse
from mcpauth.testing import LoopbackStack

needs_cryptography = pytest.mark.skipif(
    importlib.util.find_spec("cryptography") is None, reason="needs the cryptography package")

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEY = token_key("https://as.example", "https://mcp.example/mcp", "client-1", "b a")
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and flock")


def token(value="tok-1", expires_in=3600.0, received_at=None, **kw):
    return TokenResponse(value, "Bearer", expires_in,
                         received_at=time.time() if received_at is None else received_at, **kw)


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def document(path):
    with open(str(path), encoding="utf-8") as f:
        return json.load(f)


def write_private(path, content):
    """Write ``content`` as another program would, then make it 0600 (a file others can
    read is tightened with a warning: see test_cache_trust.py)."""
    path.write_bytes(content)
    os.chmod(str(path), 0o600)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "tokens.json"


# ---------------------------------------------------------------- storing and reading


def test_token_round_trip_keeps_every_field_but_the_refresh_token(path):
    cache = FileTokenCache(path)
    original = token("tok-abc", 120.0, received_at=time.time() - 10.0, scope="a b",
                     refresh_token="rt-should-not-be-stored",
                     issued_token_type="urn:ietf:params:oauth:token-type:access_token")
    cache.set_token(KEY, original)
    loaded = FileTokenCache(path).get_token(KEY)
    assert loaded is not None
    assert (loaded.access_token, loaded.token_type, loaded.expires_in, loaded.scope,
            loaded.issued_token_type) == ("tok-abc", "Bearer", 120.0, "a b",
                                          "urn:ietf:params:oauth:token-type:access_token")
    assert loaded.received_at == original.received_at
    assert loaded.expires_at == original.expires_at
    assert loaded.refresh_token is None
    raw = path.read_text(encoding="utf-8")
    assert "rt-should-not-be-stored" not in raw
    doc = json.loads(raw)
    assert doc["format"] == FILE_FORMAT and doc["version"] == FILE_VERSION
    assert doc["tokens"][KEY]["expires_at"] == original.expires_at


def test_unknown_keys_and_servers_are_none(path):
    cache = FileTokenCache(path)
    assert cache.get_token(KEY) is None
    assert cache.get_discovery("https://mcp.example/mcp") is None
    assert not path.exists()  # reading creates nothing


def test_token_without_expiry_round_trips(path):
    FileTokenCache(path).set_token(KEY, token("forever", None))
    loaded = FileTokenCache(path).get_token(KEY)
    assert loaded.access_token == "forever" and loaded.expires_at is None


def test_discovery_round_trip_returns_copies(path):
    cache = FileTokenCache(path)
    value = {"server_url": "https://mcp.example/mcp", "auth_methods": ["private_key_jwt"]}
    cache.set_discovery("https://mcp.example/mcp", value)
    got = FileTokenCache(path).get_discovery("https://mcp.example/mcp")
    assert got == value
    got["server_url"] = "changed"
    assert cache.get_discovery("https://mcp.example/mcp") == value
    cache.delete_discovery("https://mcp.example/mcp")
    assert FileTokenCache(path).get_discovery("https://mcp.example/mcp") is None
    cache.delete_discovery("https://mcp.example/mcp")  # absent: no error


def test_entries_are_kept_apart_by_key(path):
    cache = FileTokenCache(path)
    other = token_key("https://as.example", "https://other.example/mcp", "client-1", "a b")
    cache.set_token(KEY, token("for-mcp"))
    cache.set_token(other, token("for-other"))
    assert cache.get_token(KEY).access_token == "for-mcp"
    assert cache.get_token(other).access_token == "for-other"
    assert set(document(path)["tokens"]) == {KEY, other}


def test_delete_token_only_removes_the_named_token(path):
    cache = FileTokenCache(path)
    cache.set_token(KEY, token("current"))
    cache.delete_token(KEY, "an-older-token")
    assert cache.get_token(KEY).access_token == "current"
    cache.delete_token(KEY, "current")
    assert cache.get_token(KEY) is None
    cache.set_token(KEY, token("again"))
    cache.delete_token(KEY)
    assert cache.get_token(KEY) is None
    cache.delete_token(KEY)  # absent: no error


def test_expired_tokens_are_dropped_when_the_file_is_written(path):
    cache = FileTokenCache(path)
    cache.set_token(KEY, token("old", 60.0, received_at=time.time() - 3600.0))
    assert "old" in path.read_text(encoding="utf-8")  # the entry just written is kept
    other = token_key(None, "https://x.example/mcp", None, None)
    cache.set_token(other, token("new"))
    assert set(document(path)["tokens"]) == {other}


def test_a_write_by_another_process_is_seen_by_the_next_read(path):
    reader = FileTokenCache(path)
    FileTokenCache(path).set_token(KEY, token("first"))
    assert reader.get_token(KEY).access_token == "first"
    doc = document(path)
    doc["tokens"][KEY]["access_token"] = "rewritten-elsewhere"
    path.write_text(json.dumps(doc), encoding="utf-8")  # same size class, new content
    assert reader.get_token(KEY).access_token == "rewritten-elsewhere"
    path.unlink()
    assert reader.get_token(KEY) is None


def test_concurrent_writers_in_threads_lose_no_entries(path):
    keys = [token_key(None, "https://mcp{}.example/mcp".format(i), None, None)
            for i in range(8)]

    def write(key):
        FileTokenCache(path).set_token(key, token("t-" + key[-20:]))

    threads = [threading.Thread(target=write, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert set(document(path)["tokens"]) == set(keys)


# ---------------------------------------------------------------- the file itself


@posix_only
def test_file_and_lock_file_are_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        cache = FileTokenCache(tmp_path / "a.json")
        cache.set_token(KEY, token())
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.json") == 0o600
    assert mode(tmp_path / "a.json.lock") == 0o600


@posix_only
def test_a_group_readable_file_is_replaced_by_a_0600_one(path):
    FileTokenCache(path).set_token(KEY, token("one"))
    os.chmod(str(path), 0o644)
    with pytest.warns(MCPAuthWarning, match="readable by others"):
        FileTokenCache(path).set_token(KEY, token("two"))
    assert mode(path) == 0o600


@posix_only
def test_missing_parent_directories_are_created_0700(tmp_path):
    target = tmp_path / "state" / "mcpauth" / "tokens.json"
    FileTokenCache(target).set_token(KEY, token())
    assert mode(tmp_path / "state" / "mcpauth") == 0o700
    assert mode(target) == 0o600


@posix_only
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_every_missing_parent_directory_is_0700_whatever_the_umask(tmp_path, umask):
    """os.makedirs gives its mode only to the last directory: under umask 0 the ones
    above it were world-writable (0777), so another user could swap the cache file."""
    target = tmp_path / "a" / "b" / "c" / "tokens.json"
    old = os.umask(umask)
    try:
        FileTokenCache(target).set_token(KEY, token())
    finally:
        os.umask(old)
    for directory in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert mode(directory) == 0o700, directory
    assert mode(target) == 0o600
    assert FileTokenCache(target).get_token(KEY).access_token == token().access_token


def test_writes_are_atomic_replacements_leaving_no_temporary_files(path):
    cache = FileTokenCache(path)
    cache.set_token(KEY, token("one"))
    first_inode = os.stat(str(path)).st_ino
    cache.set_discovery("https://mcp.example/mcp", {"a": 1})
    assert sorted(os.listdir(str(path.parent))) == ["tokens.json", "tokens.json.lock"]
    if os.name == "posix":
        assert os.stat(str(path)).st_ino != first_inode  # a new file, renamed over


def test_path_like_and_repr_shows_only_the_path(path):
    cache = FileTokenCache(pathlib.Path(str(path)))
    cache.set_token(KEY, token("secret-token-value"))
    assert cache.path == str(path)
    assert repr(cache) == "FileTokenCache({!r})".format(str(path))
    assert isinstance(cache, TokenCache)


@pytest.mark.parametrize("bad", [None, 42, b"/tmp/x", ""])
def test_a_path_that_is_not_a_str_path_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError):
        FileTokenCache(bad)


def test_a_directory_is_not_a_cache_file(tmp_path):
    with pytest.raises(ConfigurationError, match="directory"):
        FileTokenCache(tmp_path)


def test_a_bad_lock_timeout_is_a_configuration_error(path):
    with pytest.raises(ConfigurationError):
        FileTokenCache(path, lock_timeout=-1)


# ---------------------------------------------------------------- corrupt and foreign files


def _valid_doc():
    return {"format": FILE_FORMAT, "version": FILE_VERSION, "discovery": {},
            "tokens": {KEY: {"access_token": "x", "token_type": "Bearer",
                             "expires_in": 60, "received_at": time.time()}}}


def _with(**changes):
    doc = _valid_doc()
    for name, value in changes.items():
        if name == "entry":
            doc["tokens"][KEY].update(value)
        else:
            doc[name] = value
    return json.dumps(doc).encode("utf-8")


CORRUPT = {
    "not-json": b"{\"format\": \"mcpauth-token-cache\", \"tokens\": {",
    "not-utf8": b"\xff\xfe\x00garbage",
    "json-array": b"[1, 2, 3]",
    "foreign-json": b'{"servers": ["a"], "hello": "world"}',
    "other-format": _with(format="something-else"),
    "newer-version": _with(version=2),
    "boolean-version": _with(version=True),
    "tokens-not-object": _with(tokens=["x"]),
    "discovery-not-object": _with(discovery="x"),
    "token-not-string": _with(entry={"access_token": 5}),
    "empty-token": _with(entry={"access_token": ""}),
    "received-at-string": _with(entry={"received_at": "yesterday"}),
    "expires-in-nan": _with(entry={"expires_in": float("nan")}),
    "scope-not-string": _with(entry={"scope": ["a"]}),
    "discovery-entry-list": _with(discovery={"https://mcp.example/mcp": []}),
    # E: RecursionError and OverflowError escaped the "never raises" promise
    "deeply-nested": (b'{"format":"mcpauth-token-cache","version":1,"tokens":'
                      + b"[" * 100000 + b"]" * 100000 + b"}"),
    "deeply-nested-discovery": (b'{"format":"mcpauth-token-cache","version":1,"tokens":{},'
                                b'"discovery":{"u":' + b"{\"a\":" * 50000 + b"1"
                                + b"}" * 50000 + b"}}"),
    "received-at-huge-int": _with(entry={"received_at": 10 ** 400}),
    "expires-in-huge-int": _with(entry={"expires_in": -10 ** 400}),
    # B: a token that cannot go into an Authorization header (RFC 6749 Appendix A.12)
    "token-with-crlf": _with(entry={"access_token": "tok\r\nX-Injected: 1"}),
    "token-non-ascii": _with(entry={"access_token": "tok-\u20ac"}),
}


@pytest.mark.parametrize("content", list(CORRUPT.values()), ids=list(CORRUPT))
def test_a_corrupt_or_foreign_file_is_ignored_with_a_warning_and_rewritten(path, content,
                                                                           caplog):
    write_private(path, content)
    cache = FileTokenCache(path)
    with caplog.at_level(logging.WARNING, logger="mcpauth"):
        with pytest.warns(MCPAuthWarning, match="ignoring the token cache"):
            assert cache.get_token(KEY) is None
    assert any("ignoring the token cache" in r.getMessage() for r in caplog.records)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same content is not reported twice
        assert cache.get_discovery("https://mcp.example/mcp") is None
        cache.set_token(KEY, token("fresh"))
    doc = document(path)
    assert doc["format"] == FILE_FORMAT and doc["version"] == FILE_VERSION
    assert FileTokenCache(path).get_token(KEY).access_token == "fresh"


def test_a_huge_file_is_not_read(path, monkeypatch):
    import mcpauth.filecache

    monkeypatch.setattr(mcpauth.filecache, "MAX_FILE_BYTES", 100)
    write_private(path, _with(discovery={"https://mcp.example/mcp": {"pad": "x" * 200}}))
    with pytest.warns(MCPAuthWarning, match="larger than 100 bytes"):
        assert FileTokenCache(path).get_token(KEY) is None


def test_an_empty_file_is_simply_empty(path):
    write_private(path, b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FileTokenCache(path).get_token(KEY) is None


def test_an_unwritable_location_warns_and_the_caller_goes_on(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    cache = FileTokenCache(blocker / "tokens.json")
    with pytest.warns(MCPAuthWarning) as record:
        cache.set_token(KEY, token())
    messages = " ".join(str(w.message) for w in record)
    assert "not using the token cache" in messages and "in memory" in messages
    # The run goes on with the token it got (see test_cache_trust.py for the rest).
    assert cache.get_token(KEY).access_token == token().access_token


# ---------------------------------------------------------------- locking


def test_lock_is_reentrant_for_writes_inside_it(path):
    cache = FileTokenCache(path, lock_timeout=1)
    with cache.lock(KEY):
        with cache.lock(KEY):
            cache.set_token(KEY, token("inside"))
        cache.delete_discovery("https://nothing.example/mcp")
    assert cache.get_token(KEY).access_token == "inside"


def test_threads_with_separate_instances_exclude_each_other(path):
    holder, waiter = FileTokenCache(path), FileTokenCache(path)
    inside, release = threading.Event(), threading.Event()
    order = []

    def hold():
        with holder.lock(KEY):
            inside.set()
            release.wait(5)
            order.append("holder-out")

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(5)
    timer = threading.Timer(0.2, release.set)
    timer.start()
    with waiter.lock(KEY):
        order.append("waiter-in")
    thread.join(5)
    timer.join(5)
    assert order == ["holder-out", "waiter-in"]


def test_a_thread_holding_the_lock_too_long_is_reported_then_skipped(path):
    """F: lock_timeout bounds the wait for another thread too (a slow assertion callback
    in one thread must not block unrelated servers' threads forever)."""
    holder, waiter = FileTokenCache(path, lock_timeout=5), FileTokenCache(path, lock_timeout=0.3)
    inside, release = threading.Event(), threading.Event()

    def hold():
        with holder.lock(KEY):
            inside.set()
            release.wait(10)
            holder.set_token(KEY, token("holder"))

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(5)
        other = token_key("https://as2.example", "https://mcp2.example/mcp", "c2", None)
        start = time.monotonic()
        with pytest.warns(MCPAuthWarning, match="another thread has held the token cache "
                                                "lock .* for more than 0.3 s"):
            with waiter.lock(other):
                waited = time.monotonic() - start
                waiter.set_token(other, token("waiter"))   # writes go on unlocked too
        assert 0.25 <= waited < 3
        assert thread.is_alive()                            # the holder still holds it
    finally:
        release.set()
        thread.join(10)
    assert not thread.is_alive()
    # Both entries survive (the holder read the file after the waiter wrote it), and
    # the lock works normally again: no warning, the state was not disturbed.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with waiter.lock(KEY):
            with waiter.lock(KEY):
                pass
        assert FileTokenCache(path).get_token(KEY).access_token == "holder"
        assert FileTokenCache(path).get_token(other).access_token == "waiter"


def test_lock_timeout_zero_does_not_wait_for_a_thread(path):
    holder, waiter = FileTokenCache(path), FileTokenCache(path, lock_timeout=0)
    inside, release = threading.Event(), threading.Event()

    def hold():
        with holder.lock(KEY):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(5)
        start = time.monotonic()
        with pytest.warns(MCPAuthWarning, match="another thread"):
            with waiter.lock(KEY):
                pass
        assert time.monotonic() - start < 1
    finally:
        release.set()
        thread.join(10)


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@posix_only
def test_a_lock_held_too_long_by_another_process_is_reported_then_skipped(path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path) + ".lock", "5"],
                            stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        cache = FileTokenCache(path, lock_timeout=0.3)
        start = time.monotonic()
        with pytest.warns(MCPAuthWarning, match="held the token cache lock"):
            with cache.lock(KEY):
                waited = time.monotonic() - start
        assert 0.25 <= waited < 3
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cache.lock(KEY):  # free again: no warning
            pass


# ---------------------------------------------------------------- with providers


def test_memory_cache_stays_the_default():
    provider = ClientCredentialsProvider("c", "s")
    assert isinstance(provider._cache, MemoryTokenCache)


def test_second_provider_with_the_same_file_sends_nothing(path):
    with LoopbackStack() as stack:
        first = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                          server_url=stack.mcp_url,
                                          cache=FileTokenCache(path))
        issued = first.token()
        as_seen, mcp_seen = len(stack.as_.requests), len(stack.mcp.requests)
        assert len(stack.as_.token_requests()) == 1
        second = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                           server_url=stack.mcp_url,
                                           cache=FileTokenCache(path))
        assert second.token() == issued
        # Neither discovery nor a token request: everything came from the file.
        assert len(stack.as_.requests) == as_seen
        assert len(stack.mcp.requests) == mcp_seen
        raw = path.read_text(encoding="utf-8")
        assert stack.client_secret not in raw
        assert issued in raw
        assert stack.issuer in raw  # the discovery result, keyed by server and client
        entries = list(document(path)["discovery"].values())
        assert [e["server_url"] for e in entries] == [stack.mcp_url]


def test_a_refused_token_is_deleted_from_the_file_and_replaced(path):
    with LoopbackStack() as stack:
        cache = FileTokenCache(path)
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             server_url=stack.mcp_url, cache=cache)
        old = provider.token()
        stack.as_.revoke(old)
        import requests

        with requests.Session() as session:
            session.auth = provider
            reply = session.post(stack.mcp_url, json={
                "jsonrpc": "2.0", "id": 1, "method": "tools/list",
                "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                     "io.modelcontextprotocol/clientCapabilities": {}}}},
                headers={"Accept": "application/json, text/event-stream",
                         "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"})
        assert reply.status_code == 200
        raw = path.read_text(encoding="utf-8")
        assert old not in raw
        assert len(stack.as_.token_requests()) == 2
        assert FileTokenCache(path).get_token(
            next(iter(document(path)["tokens"]))).access_token in raw


@pytest.mark.crypto
@needs_cryptography
def test_no_key_material_or_assertion_in_the_file(path):
    from mcpauth import PrivateKeyJwtProvider, jws

    key = jws.generate_private_key("EC")
    with LoopbackStack() as stack:
        stack.as_.register_client("jwt-client", public_jwk=key.public_jwk(),
                                  auth_method="private_key_jwt")
        provider = PrivateKeyJwtProvider("jwt-client", key, server_url=stack.mcp_url,
                                         cache=FileTokenCache(path))
        issued = provider.token()
        assertion = stack.as_.token_requests()[0].form["client_assertion"]
    raw = path.read_text(encoding="utf-8")
    assert issued in raw
    assert assertion not in raw
    assert assertion.split(".")[2] not in raw
    assert "PRIVATE KEY" not in raw and '"d"' not in raw


# ---------------------------------------------------------------- two processes


_GET_TOKEN = """
import os, sys
from mcpauth import ClientCredentialsProvider
from mcpauth.cache import FileTokenCache
provider = ClientCredentialsProvider(sys.argv[2], os.environ["TEST_CLIENT_SECRET"],
                                     server_url=sys.argv[1], cache=FileTokenCache(sys.argv[3]))
print(provider.token())
"""


def test_two_processes_started_together_make_one_token_request(path):
    with LoopbackStack() as stack:
        # The secret goes in the environment: never on a command line.
        env = dict(os.environ, PYTHONPATH=str(ROOT), TEST_CLIENT_SECRET=stack.client_secret)
        stack.as_.delay = 0.6  # widen the window in which both want a token
        procs = [subprocess.Popen(
            [sys.executable, "-c", _GET_TOKEN, stack.mcp_url, stack.client_id, str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, env=env) for _ in range(2)]
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outputs.append(out.strip())
        assert len(stack.as_.token_requests()) == 1
        assert outputs[0] == outputs[1]
        assert stack.as_.introspect(outputs[0]) is not None
    assert mode(path) == 0o600 or os.name != "posix"
