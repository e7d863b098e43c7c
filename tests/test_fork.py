"""Fork safety: a child forked while another thread holds a provider's lock never blocks.

``os.fork()`` copies only the calling thread; a lock held by another thread (a token
request in flight) would stay locked forever in the child. Python 3.6 has no
``os.register_at_fork``, so mcpauth also compares the pid. Real forks, real loopback
servers; each child reports through its exit status and is killed if it hangs.
"""

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import warnings

import pytest
import requests

from mcpauth import ClientCredentialsProvider, FileTokenCache, _fork
from mcpauth.testing import LoopbackStack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that fork() in a threaded process may deadlock: that is the
    # very situation under test.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

CHILD_LIMIT = 10.0  # seconds a child may take before it counts as blocked


def _wait_child(pid):
    deadline = time.monotonic() + CHILD_LIMIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "blocked"


@contextlib.contextmanager
def _held_by_another_thread(lock):
    """``lock`` held by a thread that stays inside it until the block ends."""
    entered, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join()


def _child_gets_a_token(provider, url):
    """Child body: exit 0 with a token, 3 on an error (never raise past os._exit)."""
    try:
        return 0 if provider.token(url) else 2
    except BaseException:
        return 3


def _child_sends_a_request(provider, url):
    """Child body through the per-request path (``session.auth = provider``)."""
    try:
        with requests.Session() as session:
            session.auth = provider
            response = session.post(url, json={"jsonrpc": "2.0", "id": 1,
                                               "method": "tools/list", "params": {}},
                                    headers={"Accept": "application/json, text/event-stream",
                                             "MCP-Protocol-Version": "2025-11-25"})
        return 0 if response.status_code == 200 else 2
    except BaseException:
        return 3


def _renewal_in_flight(stack, provider):
    """Start a thread inside a slow token request (holding the provider's locks)."""
    stack.as_.delay = 1.5
    thread = threading.Thread(target=provider.token, args=(stack.mcp_url,))
    thread.start()
    deadline = time.monotonic() + 10
    while not stack.as_.token_requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stack.as_.token_requests(), "the token request never reached the server"
    return thread


def _fork_and_wait(body):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 4
        try:
            code = body()
        finally:
            os._exit(code)
    return _wait_child(pid)


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_os_fork_while_a_token_request_holds_the_lock(cache, tmp_path):
    with LoopbackStack() as stack:
        kwargs = {"cache": FileTokenCache(str(tmp_path / "tokens.json"))} \
            if cache == "file" else {}
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret, **kwargs)
        thread = _renewal_in_flight(stack, provider)
        try:
            status = _fork_and_wait(lambda: _child_gets_a_token(provider, stack.mcp_url))
        finally:
            thread.join()
        assert status == 0


def _as_if_the_fork_hook_missed(provider):
    """In a child: the recorded pid is the parent's again, and the provider's lock is
    held by a thread that is gone (what a fork made from C, or Python 3.6, leaves)."""
    _fork._pid = os.getppid()
    held = threading.RLock()
    owner = threading.Thread(target=held.acquire)
    owner.start()
    owner.join()
    provider._states[provider.server_url].lock = held


@pytest.mark.parametrize("child", [_child_gets_a_token, _child_sends_a_request],
                         ids=["token()", "per-request"])
def test_a_fork_the_hook_did_not_see_is_detected_by_its_pid(child):
    # Python 3.6 has no os.register_at_fork, and a fork made from C may bypass it: then
    # only the pid comparison notices. In the child, undo what the hook did (the
    # recorded pid is the parent's again, the lock is held by a thread that is gone)
    # and check that the provider still does not block.
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        thread = _renewal_in_flight(stack, provider)

        def body():
            _as_if_the_fork_hook_missed(provider)
            return child(provider, stack.mcp_url)

        try:
            status = _fork_and_wait(body)
        finally:
            thread.join()
        assert status == 0


def test_a_401_in_a_fork_the_hook_did_not_see_does_not_block():
    # The per-request path with a cached token makes no fork check (it takes no lock);
    # the 401 that follows a revoked token does take the provider's lock, so its path
    # must make the check. The child sees the parent's pid and a lock nobody releases.
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        assert _child_sends_a_request(provider, stack.mcp_url) == 0  # warm: cached token
        stack.as_.revoke()

        def body():
            _as_if_the_fork_hook_missed(provider)
            return _child_sends_a_request(provider, stack.mcp_url)

        assert _fork_and_wait(body) == 0


def _mp_child(provider, url, queue):
    queue.put(_child_gets_a_token(provider, url))


def test_multiprocessing_fork_context_while_a_token_request_holds_the_lock():
    ctx = multiprocessing.get_context("fork")
    with LoopbackStack() as stack:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret)
        thread = _renewal_in_flight(stack, provider)
        queue = ctx.Queue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            process = ctx.Process(target=_mp_child, args=(provider, stack.mcp_url, queue))
            process.start()
        try:
            process.join(CHILD_LIMIT)
            blocked = process.is_alive()
            if blocked:
                process.terminate()
                process.join()
        finally:
            thread.join()
        assert not blocked, "the child blocked on a lock held by the parent's thread"
        assert queue.get(timeout=5) == 0


def test_mcp_client_forked_during_another_threads_handshake():
    from mcpauth import BearerTokenProvider, MCPClient

    with LoopbackStack() as stack:
        token = ClientCredentialsProvider(stack.client_id, stack.client_secret).token(
            stack.mcp_url)
        entered, release = threading.Event(), threading.Event()
        blocker = []

        def source():
            if threading.current_thread() in blocker:
                entered.set()
                release.wait(30)      # the parent's connect(), stuck inside the lock
            return token

        client = MCPClient(stack.mcp_url, auth=BearerTokenProvider(source))
        thread = threading.Thread(target=client.connect)
        blocker.append(thread)
        thread.start()
        assert entered.wait(10)

        def body():
            try:
                return 0 if isinstance(client.list_tools(), list) else 2
            except BaseException:
                return 3

        try:
            status = _fork_and_wait(body)
        finally:
            release.set()
            thread.join()
            client.close()
        assert status == 0


def _quiet_get(cache, key):
    """Child body: the tampered entry is ignored (with a warning) instead of blocking."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return 0 if cache.get_token(key) is None else 2


def test_redis_cache_forked_while_another_thread_holds_its_lock():
    redis = pytest.importorskip("redis")
    pytest.importorskip("cryptography")
    from redis_server import RedisServer

    from mcpauth import RedisTokenCache
    from mcpauth.rediscache import generate_cache_key

    server = RedisServer().start()
    try:
        cache = RedisTokenCache.from_url(server.unix_url, generate_cache_key(), timeout=0.5)
        client = redis.Redis(unix_socket_path=server.socket, socket_timeout=1)
        client.set(cache._name("k", "token"), b"not sealed by us")  # opening it locks
        try:
            with _held_by_another_thread(cache._state):
                status = _fork_and_wait(lambda: _quiet_get(cache, "k"))
        finally:
            client.connection_pool.disconnect()
        assert status == 0
    finally:
        server.stop()


def test_dpop_nonce_store_forked_while_another_thread_holds_its_lock():
    from mcpauth.dpop import NonceStore

    store = NonceStore()
    store.remember("https://mcp.example.com/mcp", "n-1")
    with _held_by_another_thread(store._lock):
        status = _fork_and_wait(
            lambda: 0 if store.remember("https://mcp.example.com/mcp", "n-2") else 2)
    assert status == 0
