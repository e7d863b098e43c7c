"""RedisTokenCache against a real redis-server (Debian's package; .ci/run installs it).

Each test starts its own redis-server on a unix socket and a loopback port in a temporary
directory (tests/redis_server.py) and stops it; the fleet tests run real processes
(tests/redis_worker.py) against a real loopback authorization server (mcpauth.testing).
"""

import base64
import hashlib
import importlib.util
import json
import os
import threading
import time
import warnings

import pytest

from mcpauth import ClientCredentialsProvider, ConfigurationError, MCPAuthWarning
from mcpauth.cache import token_key
from mcpauth.grants import TokenResponse
from mcpauth.testing import LoopbackStack
from mcpauth.testing._http import LoopbackServer

from redis_server import BINARY, RedisServer, spawn_workers, worker_results


if importlib.util.find_spec("redis") is None or importlib.util.find_spec("cryptography") is None:
    pytest.skip("RedisTokenCache tests need redis-py and cryptography (tox installs them in "
                "the py3x environments)", allow_module_level=True)
if BINARY is None:
    if os.environ.get("CI"):
        raise RuntimeError("redis-server is missing in CI: .ci/run must install it")
    pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does "
                "this in CI)", allow_module_level=True)

import redis  # noqa: E402

from mcpauth.rediscache import (RedisTokenCache, _Sealer, generate_cache_key,  # noqa: E402
                                load_cache_keys)

KEY = token_key("https://as.example", "https://mcp.example/mcp", "client-1", "b a")
CACHE_KEY = generate_cache_key()
OTHER_KEY = generate_cache_key()


def token(value="tok-1", expires_in=3600.0, received_at=None, **kw):
    return TokenResponse(value, "Bearer", expires_in,
                         received_at=time.time() if received_at is None else received_at, **kw)


@pytest.fixture
def server():
    srv = RedisServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    c = redis.Redis(unix_socket_path=server.socket, socket_timeout=1)
    yield c
    c.connection_pool.disconnect()


def make(server, keys=CACHE_KEY, url=None, **options):
    return RedisTokenCache.from_url(url or server.unix_url, keys, timeout=0.5, **options)


def names(client):
    return sorted(k.decode() for k in client.keys("*"))


# ---------------------------------------------------------------- the TokenCache contract


def test_token_round_trip_keeps_every_field_but_the_refresh_token(server):
    stored = token(scope="b a", refresh_token="rt-secret",
                   issued_token_type="urn:ietf:params:oauth:token-type:access_token")
    make(server).set_token(KEY, stored)
    got = make(server).get_token(KEY)  # a second instance: from Redis, not memory
    assert (got.access_token, got.token_type, got.expires_in, got.scope,
            got.issued_token_type) == ("tok-1", "Bearer", 3600.0, "b a",
                                       "urn:ietf:params:oauth:token-type:access_token")
    assert got.received_at == stored.received_at and got.refresh_token is None


def test_unknown_keys_discovery_copies_and_separate_keys(server):
    a, b = make(server), make(server)
    assert a.get_token(KEY) is None and a.get_discovery("https://x/mcp") is None
    value = {"issuer": "https://as.example", "token_endpoint": "https://as.example/token"}
    a.set_discovery("https://x/mcp", value)
    got = b.get_discovery("https://x/mcp")
    assert got == value
    got["issuer"] = "changed"
    assert b.get_discovery("https://x/mcp") == value
    other = token_key("https://as.example", "https://mcp.example/mcp", "client-2", "a b")
    a.set_token(KEY, token("tok-1"))
    a.set_token(other, token("tok-2"))
    assert b.get_token(KEY).access_token == "tok-1"
    assert b.get_token(other).access_token == "tok-2"
    a.delete_discovery("https://x/mcp")
    assert make(server).get_discovery("https://x/mcp") is None


def test_delete_token_only_removes_the_named_token_everywhere(server):
    a, b = make(server), make(server)
    a.set_token(KEY, token("tok-1"))
    b.delete_token(KEY, "tok-other")
    assert make(server).get_token(KEY).access_token == "tok-1"
    b.delete_token(KEY, "tok-1")
    assert make(server).get_token(KEY) is None
    a.set_token(KEY, token("tok-2"))
    a.delete_token(KEY)
    assert a.get_token(KEY) is None and make(server).get_token(KEY) is None


def test_a_refused_token_is_not_deleted_when_another_host_already_replaced_it(server):
    host_a, host_b = make(server), make(server)
    host_a.set_token(KEY, token("old"))
    assert host_b.get_token(KEY).access_token == "old"
    host_a.set_token(KEY, token("new"))  # host A renewed
    host_b.delete_token(KEY, "old")  # host B's server refused the old one
    assert host_b.get_token(KEY).access_token == "new"


def test_redis_ttl_is_the_token_expiry_and_tokens_without_expiry_have_none(server, client):
    cache = make(server)
    cache.set_token(KEY, token(expires_in=120.0))
    (name,) = [n for n in names(client) if n.endswith(":token")]
    assert 118_000 <= client.pttl(name) <= 120_000
    cache.set_token(KEY, token(expires_in=None))
    assert client.pttl(name) == -1
    cache.set_token(KEY, token(expires_in=10.0, received_at=time.time() - 20))
    assert make(server).get_token(KEY).expires_in is None  # the expired one is not shared
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an absurd lifetime is not "Redis unavailable"
        cache.set_token(KEY, token("long", expires_in=1e17))
        assert make(server).get_token(KEY).access_token == "long"
    assert 0 < client.pttl(name) <= 30 * 86400 * 1000


def test_a_warm_call_makes_no_redis_round_trip(server, client):
    cache = make(server)
    cache.set_token(KEY, token())
    cache.set_discovery("https://x/mcp", {"issuer": "https://as.example"})
    before = client.info("stats")["total_commands_processed"]
    for _ in range(200):
        assert cache.get_token(KEY).access_token == "tok-1"
        assert cache.get_discovery("https://x/mcp")
    after = client.info("stats")["total_commands_processed"]
    assert after - before == 1  # the INFO command itself


# ---------------------------------------------------------------- key layout


def crc16(data):
    """CRC16-XMODEM, the Redis Cluster key slot function (Redis cluster specification)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(name):
    start = name.find("{")
    end = name.find("}", start + 1)
    if start >= 0 and end > start + 1:
        name = name[start + 1:end]
    return crc16(name.encode()) % 16384


def test_crc16_is_the_cluster_one():
    assert crc16(b"123456789") == 0x31C3  # the check value in the Redis Cluster spec


def test_a_token_and_its_lock_share_one_cluster_slot_and_names_reveal_nothing(server, client):
    cache = make(server, namespace="fleet-a")
    cache.set_token(KEY, token())
    with cache.lock(KEY):
        held = names(client)
    lock = [n for n in held if n.endswith(":lock")][0]
    tok = [n for n in held if n.endswith(":token")][0]
    assert lock.startswith("fleet-a:{") and tok.startswith("fleet-a:{")
    assert lock[:-len("lock")] == tok[:-len("token")]
    assert slot(lock) == slot(tok)
    assert names(client) == [tok]  # the lock is released
    assert "as.example" not in tok and "client-1" not in tok


def test_entries_are_sealed_at_rest(server, client):
    cache = make(server)
    cache.set_token(KEY, token("very-secret-access-token"))
    cache.set_discovery("https://x/mcp", {"token_endpoint": "https://as.example/token"})
    for name in names(client):
        raw = client.get(name)
        assert raw.startswith(b"mcpauth1.")
        assert b"very-secret" not in raw and b"as.example" not in raw
        assert b"very-secret" not in base64.urlsafe_b64decode(raw[9:])


def test_namespaces_keep_fleets_apart(server):
    make(server, namespace="a").set_token(KEY, token())
    assert make(server, namespace="b").get_token(KEY) is None


# ---------------------------------------------------------------- tampering and keys


def only_name(client, suffix):
    (name,) = [n for n in names(client) if n.endswith(suffix)]
    return name


def test_a_tampered_entry_is_ignored_with_one_warning_and_replaced(server, client):
    make(server).set_token(KEY, token("good"))
    name = only_name(client, ":token")
    # Flip one bit of the sealed bytes (not a base64 character: the last characters may
    # carry padding bits that decoding drops, which made this test flaky).
    value = client.get(name).decode()
    blob = bytearray(base64.urlsafe_b64decode(value[len("mcpauth1."):]))
    blob[-3] ^= 1
    client.set(name, "mcpauth1." + base64.urlsafe_b64encode(bytes(blob)).decode())
    cache = make(server)
    with pytest.warns(MCPAuthWarning, match="does not open") as record:
        assert cache.get_token(KEY) is None
        assert cache.get_token(KEY) is None
    assert len(record) == 1 and "good" not in str(record[0].message)
    cache.set_token(KEY, token("fresh"))
    assert make(server).get_token(KEY).access_token == "fresh"


@pytest.mark.parametrize("forge", ["foreign-key", "plain-json", "moved", "garbage"])
def test_a_forged_entry_is_never_used(server, client, forge):
    other = token_key("https://as.example", "https://mcp.example/mcp", "client-2", None)
    if forge == "foreign-key":
        make(server, keys=OTHER_KEY).set_token(KEY, token("attacker"))
    elif forge == "moved":
        make(server).set_token(other, token("attacker"))  # sealed for another cache key
        value = client.get(only_name(client, ":token"))
        make(server).set_token(KEY, token("x"))
        client.set(make(server)._name(KEY, "token"), value)
    else:
        name = make(server)._name(KEY, "token")
        client.set(name, json.dumps({"access_token": "attacker", "token_type": "Bearer"})
                   if forge == "plain-json" else b"mcpauth1.\xff\x00!!")
    with pytest.warns(MCPAuthWarning, match="does not open"):
        got = make(server).get_token(KEY)
    assert got is None


def test_rotation_opens_entries_sealed_with_an_older_key(server):
    make(server, keys=CACHE_KEY).set_token(KEY, token("old-key"))
    rotated = make(server, keys=[OTHER_KEY, CACHE_KEY])
    assert rotated.get_token(KEY).access_token == "old-key"
    rotated.set_token(KEY, token("new-key"))
    assert make(server, keys="{} {}".format(OTHER_KEY, CACHE_KEY)).get_token(
        KEY).access_token == "new-key"
    with pytest.warns(MCPAuthWarning, match="does not open"):
        assert make(server, keys=CACHE_KEY).get_token(KEY) is None


@pytest.mark.parametrize("kind", ["discovery", "token without expiry"])
def test_rotation_reseals_entries_that_never_expire_so_the_old_key_can_go(server, client,
                                                                          kind):
    # Discovery results (and a token without expires_in) have no Redis TTL: read with
    # the rotated keys, they are sealed again under the newest key, so that dropping the
    # old key (the README's rotation advice) loses nothing and warns of no tampering.
    url = "https://mcp.example/mcp"
    document = {"issuer": "https://as.example", "token_endpoint": "https://as.example/t"}
    old = make(server, keys=CACHE_KEY)
    if kind == "discovery":
        old.set_discovery(url, document)
        read = lambda cache: cache.get_discovery(url)  # noqa: E731
        expected = document
    else:
        old.set_token(KEY, token("forever", expires_in=None))
        read = lambda cache: cache.get_token(KEY).access_token  # noqa: E731
        expected = "forever"
    [name] = names(client)
    sealed_before = client.get(name)
    assert read(make(server, keys=[OTHER_KEY, CACHE_KEY])) == expected
    assert client.get(name) != sealed_before and client.pttl(name) == -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read(make(server, keys=OTHER_KEY)) == expected


def test_resealing_keeps_the_ttl_and_never_overwrites_a_newer_entry(server, client):
    make(server, keys=CACHE_KEY).set_token(KEY, token("old", expires_in=600))
    [name] = names(client)
    rotated = make(server, keys=[OTHER_KEY, CACHE_KEY])
    assert rotated.get_token(KEY).access_token == "old"
    assert 590000 < client.pttl(name) <= 600000
    assert make(server, keys=OTHER_KEY).get_token(KEY).access_token == "old"
    # A host still on the old key writes; another reads it with the rotated keys while
    # a third host has already stored a newer token: the newer one stays.
    make(server, keys=CACHE_KEY).set_token(KEY, token("older", expires_in=600))
    stale = client.get(name)
    make(server, keys=OTHER_KEY).set_token(KEY, token("newest", expires_in=600))
    sealer_cache = make(server, keys=[OTHER_KEY, CACHE_KEY])
    sealer_cache._open(KEY, "token", name, stale, reseal=True)
    assert make(server, keys=OTHER_KEY).get_token(KEY).access_token == "newest"


@pytest.mark.parametrize("writer_key", [OTHER_KEY, CACHE_KEY], ids=["foreign", "control"])
def test_forged_discovery_from_a_writer_without_the_key_is_never_followed(server, writer_key):
    with LoopbackStack() as stack, LoopbackServer() as attacker:
        attacker.set_route("/token", 200, {"access_token": "evil", "token_type": "Bearer",
                                           "expires_in": 3600})
        victim = make(server)
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             server_url=stack.mcp_url, cache=victim)
        discovery_key = provider._discovery_key(stack.mcp_url)
        forged = {"server_url": stack.mcp_url, "resource": stack.mcp_url,
                  "issuer": stack.as_.issuer, "token_endpoint": attacker.base_url + "/token"}
        make(server, keys=writer_key).set_discovery(discovery_key, forged)
        if writer_key == CACHE_KEY:
            # Control: an entry sealed with the fleet's key is trusted, so the key (not
            # anything else) is what keeps a Redis writer from steering credentials.
            assert provider.token() == "evil"
            assert len(attacker.requests) == 1
            return
        # The attacker writes Redis but holds another key.
        with pytest.warns(MCPAuthWarning, match="does not open"):
            issued = provider.token()
        assert attacker.requests == []
        assert stack.as_.introspect(issued) is not None
        assert len(stack.as_.token_requests()) == 1


def test_bad_keys_are_configuration_errors_that_never_show_the_key(server):
    secret = base64.b64encode(b"x" * 31).decode()
    for bad in ["", secret, "not base64 at all!", 42, [b"short"]]:
        with pytest.raises(ConfigurationError) as info:
            make(server, keys=bad)
        assert secret not in str(info.value)
    assert load_cache_keys([b"k" * 32]) == [b"k" * 32]
    assert load_cache_keys(base64.b64encode(b"k" * 32)) == [b"k" * 32]
    assert len(load_cache_keys("{}, {}".format(CACHE_KEY, OTHER_KEY))) == 2


def test_a_client_without_timeouts_is_refused(server):
    no_timeout = redis.Redis(unix_socket_path=server.socket, socket_timeout=None)
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        RedisTokenCache(no_timeout, CACHE_KEY)
    tcp = redis.Redis(port=server.port, socket_timeout=1, socket_connect_timeout=None)
    with pytest.raises(ConfigurationError, match="socket_connect_timeout"):
        RedisTokenCache(tcp, CACHE_KEY)
    RedisTokenCache(redis.Redis(port=server.port, socket_timeout=1, socket_connect_timeout=1),
                    CACHE_KEY)
    with pytest.raises(ConfigurationError):
        RedisTokenCache(object(), CACHE_KEY)


def test_repr_shows_no_key():
    sealer_key = generate_cache_key()
    cache = RedisTokenCache(redis.Redis(unix_socket_path="/nonexistent", socket_timeout=1),
                            sealer_key, namespace="ns")
    assert repr(cache) == "RedisTokenCache(namespace='ns')"
    assert sealer_key not in repr(vars(cache))


def test_the_sealed_format_binds_the_additional_data():
    sealer = _Sealer(load_cache_keys(CACHE_KEY))
    value = sealer.seal(b"aad-1", b"payload")
    assert sealer.open(b"aad-1", value) == b"payload"
    assert sealer.open(b"aad-2", value) is None
    assert sealer.open(b"aad-1", value.encode()) == b"payload"  # bytes from redis-py
    assert sealer.seal(b"aad-1", b"payload") != value  # a fresh nonce every time


# ---------------------------------------------------------------- the fleet lock


def test_the_lock_excludes_other_hosts_and_is_released_by_its_owner_only(server, client):
    a, b = make(server, lock_wait=0.3), make(server, lock_wait=0.3)
    with a.lock(KEY):
        started = time.monotonic()
        with pytest.warns(MCPAuthWarning, match="held the Redis token cache lock"):
            with b.lock(KEY):
                waited = time.monotonic() - started
        assert 0.3 <= waited < 2
        name = only_name(client, ":lock")
        owner = client.get(name)
        client.set(name, b"someone-else")  # a's lock expired and another host took it
    assert client.get(name) == b"someone-else"  # a's release did not delete it
    assert len(owner) == 32


def hold_in_thread(cache, order, store):
    def hold():
        with cache.lock(KEY):
            order.append("a-in")
            time.sleep(0.3)
            if store:
                cache.set_token(KEY, token("from-a"))
                order.append("a-stored")
            time.sleep(0.2)
            order.append("a-out")

    thread = threading.Thread(target=hold)
    thread.start()
    while not order:
        time.sleep(0.005)
    return thread


def test_a_waiter_goes_on_when_the_holder_stores_its_token_and_reads_it(server, client):
    a, b = make(server), make(server)
    order = []
    thread = hold_in_thread(a, order, store=True)
    with b.lock(KEY):
        order.append("b-in")
        assert b.get_token(KEY).access_token == "from-a"  # read from Redis inside the lock
        lock_owner = client.get(b._name(KEY, "lock"))
    thread.join()
    assert order == ["a-in", "a-stored", "b-in", "a-out"]  # not queued behind a's release
    assert lock_owner is not None  # a still held the lock: b went on without it


def test_a_waiter_takes_the_lock_when_the_holder_releases_it_without_a_token(server):
    a, b = make(server), make(server)
    order = []
    thread = hold_in_thread(a, order, store=False)
    with b.lock(KEY):
        order.append("b-in")
    thread.join()
    assert order == ["a-in", "a-out", "b-in"]


def test_a_dead_holder_frees_the_lock_by_expiry(server, client):
    cache = make(server, lock_wait=5)
    client.set(cache._name(KEY, "lock"), "dead-host", px=300)
    started = time.monotonic()
    with cache.lock(KEY):
        waited = time.monotonic() - started
    assert 0.2 <= waited < 2


def test_the_lock_is_reentrant_within_a_thread(server):
    cache = make(server, lock_wait=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cache.lock(KEY):
            with cache.lock(KEY):
                cache.set_token(KEY, token())


# ---------------------------------------------------------------- Redis down, slow, flushed


# redis-py 4.3 leaves the socket of a failed connection attempt to the garbage collector.
leaky_redis_py = pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning")


@leaky_redis_py
def test_redis_down_goes_on_in_memory_with_one_warning_and_catches_up(server):
    cache = make(server, retry_interval=0.2)
    cache.set_token(KEY, token("before"))
    server.kill()
    with pytest.warns(MCPAuthWarning, match="unavailable") as record:
        started = time.monotonic()
        assert cache.get_token(KEY).access_token == "before"
        with cache.lock(KEY):
            cache.set_token(KEY, token("during"))
        cache.set_discovery("https://x/mcp", {"issuer": "i"})
        assert cache.get_token(KEY).access_token == "during"
        assert make(server).get_token(KEY) is None  # a cold host, alone in memory
        assert time.monotonic() - started < 3
    assert len([w for w in record if "unavailable" in str(w.message)]) == 2  # one per cache
    server.start()  # empty, as after a crash
    time.sleep(0.25)
    assert cache.get_token(KEY).access_token == "during"  # the warm path writes it back
    assert make(server).get_token(KEY).access_token == "during"
    assert make(server).get_discovery("https://x/mcp") == {"issuer": "i"}


@leaky_redis_py
def test_a_slow_redis_costs_at_most_the_timeout_per_retry_interval(server, client):
    cache = make(server, retry_interval=60)
    client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    started = time.monotonic()
    with pytest.warns(MCPAuthWarning, match="unavailable"):
        assert cache.get_token(KEY) is None
        cache.set_token(KEY, token())
        assert cache.get_token(KEY).access_token == "tok-1"
    assert time.monotonic() - started < 1.2  # one 0.5 s timeout, then memory only


def test_a_flushed_redis_loses_no_token(server, client):
    cache = make(server)
    cache.set_token(KEY, token("kept"))
    client.flushall()
    assert cache.get_token(KEY).access_token == "kept"
    with cache.lock(KEY):
        assert cache.get_token(KEY).access_token == "kept"


# ---------------------------------------------------------------- fleets of processes


class Fleet(object):
    def __init__(self, server, stack, tmp):
        self.server, self.stack, self.tmp = server, stack, tmp

    def spawn(self, count, mode="once", seconds=0.0, urls=None):
        return spawn_workers(count, urls or [self.server.unix_url], CACHE_KEY, self.stack,
                             self.tmp, mode=mode, seconds=seconds)

    results = staticmethod(worker_results)


@pytest.fixture
def fleet(server, tmp_path):
    with LoopbackStack() as stack:
        yield Fleet(server, stack, str(tmp_path))


@pytest.mark.e2e
def test_fifty_cold_processes_in_five_groups_make_one_token_request(fleet):
    fleet.stack.as_.delay = 0.3  # the first request is still in flight when the rest arrive
    # Five "hosts" of ten processes; groups reach Redis by unix socket or loopback TCP.
    urls = [fleet.server.unix_url, fleet.server.tcp_url]
    procs = []
    for group in range(5):
        procs.append(urls[group % 2])
    results = Fleet.results(fleet.spawn(50, urls=procs))
    assert [r["errors"] for r in results] == [0] * 50
    assert len(fleet.stack.as_.token_requests()) == 1
    assert len({r["tokens"][0] for r in results}) == 1


@pytest.mark.e2e
def test_expiry_under_load_makes_one_renewal(fleet):
    fleet.stack.as_.token_lifetime = 8  # renewed at half its lifetime, 4 s in
    procs = fleet.spawn(10, mode="loop", seconds=6.5)
    results = Fleet.results(procs)
    assert sum(r["errors"] for r in results) == 0
    assert len(fleet.stack.as_.token_requests()) == 2  # the cold one and one renewal
    assert all(len(r["tokens"]) == 2 for r in results)


@pytest.mark.e2e
def test_redis_killed_mid_run_every_call_succeeds_and_restarted_it_is_shared_again(fleet):
    fleet.stack.as_.token_lifetime = 4  # renewed every 2 s
    procs = fleet.spawn(10, mode="loop", seconds=9)
    deadline = time.monotonic() + 60
    while not fleet.stack.as_.token_requests():  # however slow the machine
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    fleet.server.kill()
    killed_at = len(fleet.stack.as_.token_requests())
    time.sleep(4.0)
    fleet.stack.as_.token_lifetime = 60  # from now on one token outlives the run
    fleet.server.start()  # empty, as after a crash
    restarted_at = len(fleet.stack.as_.token_requests())
    results = Fleet.results(procs)
    total = len(fleet.stack.as_.token_requests())
    print("token requests: {} before the kill, {} while Redis was down, {} after the "
          "restart".format(killed_at, restarted_at - killed_at, total - restarted_at))
    assert sum(r["errors"] for r in results) == 0
    assert sum(r["calls"] for r in results) > 10 * 50
    assert max(r["slowest"] for r in results) < 3  # a warm call: Redis timeout + a token
    assert killed_at == 1
    # While Redis was down each process renewed alone: at most one request per process per
    # renewal (every 2 s for 4 s, plus one in flight at the kill).
    assert restarted_at - killed_at <= 10 * 3
    # Back: the processes meet on one token again (a process that renewed in the first
    # retry interval after the restart may still have made its own request).
    assert total - restarted_at <= 3
    finals = {r["tokens"][-1] for r in results}
    assert len(finals) <= total - restarted_at
    (cold,) = Fleet.results(fleet.spawn(1))
    assert len(fleet.stack.as_.token_requests()) == total  # found in Redis
    assert cold["tokens"][0] in finals


# ---------------------------------------------------------------- the command


def test_the_command_shares_tokens_through_redis(server, client, tmp_path):
    from test_cli import creds, run

    key_file = tmp_path / "cache.key"
    key_file.write_text("{}\n{}\n".format(OTHER_KEY, CACHE_KEY))  # rotated: newest first
    with LoopbackStack() as stack:
        make(server).set_token("unrelated", token())  # sealed with the older key
        env = dict(creds(stack), MCPAUTH_CACHE=server.tcp_url)
        code, first, err = run(["token", stack.mcp_url, "--cache-key-file", str(key_file)],
                               env)
        assert code == 0, err
        env = dict(creds(stack), MCPAUTH_CACHE_KEY="{},{}".format(OTHER_KEY, CACHE_KEY))
        code, second, err = run(["token", stack.mcp_url, "--cache", server.unix_url], env)
        assert code == 0, err
        assert first == second
        assert len(stack.as_.token_requests()) == 1
        # Sealed with the newest key, the first one listed.
        newest = hashlib.sha256(b"mcpauth cache key id\x00"
                                + load_cache_keys(OTHER_KEY)[0]).digest()[:4]
        sealed = [client.get(n) for n in names(client) if n.endswith(":token")]
        kids = sorted(base64.urlsafe_b64decode(v[len("mcpauth1."):])[:4] for v in sealed)
        assert len(kids) == 2 and newest in kids


def test_the_command_needs_the_cache_key_and_never_shows_the_url_password(server):
    from test_cli import creds, one_error_line, run

    with LoopbackStack() as stack:
        url = "redis://:hunter2-password@127.0.0.1:{}/0".format(server.port)
        code, out, err = run(["token", stack.mcp_url], dict(creds(stack), MCPAUTH_CACHE=url))
        assert code == 2
        assert "MCPAUTH_CACHE_KEY" in one_error_line(err) and "hunter2" not in err
        code, out, err = run(["token", stack.mcp_url],
                             dict(creds(stack), MCPAUTH_CACHE=url, MCPAUTH_CACHE_KEY="short"))
        assert code == 2 and "cache key 1 is not 32 bytes" in one_error_line(err)
        assert "hunter2" not in err and "short" not in err.replace("shorter", "")


def test_the_command_with_redis_down_succeeds_with_one_warning_line(server):
    from test_cli import creds, run

    server.kill()
    with LoopbackStack() as stack:
        code, out, err = run(["token", stack.mcp_url, "--cache", server.unix_url],
                             dict(creds(stack), MCPAUTH_CACHE_KEY=CACHE_KEY))
        assert code == 0 and stack.as_.introspect(out.strip()) is not None
        assert err.splitlines() == [
            "mcpauth: warning: the Redis token cache is unavailable (ConnectionError); "
            "going on in memory and trying again every 5 s"]


# ---------------------------------------------------------------- fuzz: keys, sealed values, URLs

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    hypothesis = None

if hypothesis is not None:
    FUZZ = hypothesis.settings(max_examples=300, deadline=None, database=None)
    ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(),
                         st.binary(), st.lists(st.one_of(st.text(), st.binary()), max_size=3),
                         st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))

    @FUZZ
    @hypothesis.given(st.one_of(ANYTHING, st.lists(st.sampled_from(
        [CACHE_KEY, OTHER_KEY, ",", " ", "=", "-", "_", "A" * 43, "\n"])).map("".join)))
    def test_any_key_input_gives_keys_or_a_configuration_error(value):
        try:
            keys = load_cache_keys(value)
        except ConfigurationError as exc:
            assert CACHE_KEY not in str(exc) and OTHER_KEY not in str(exc)
            return
        assert keys and all(isinstance(k, bytes) and len(k) == 32 for k in keys)

    @FUZZ
    @hypothesis.given(st.one_of(ANYTHING, st.text().map(lambda t: "mcpauth1." + t),
                                st.binary().map(lambda b: "mcpauth1." + base64.urlsafe_b64encode(
                                    b).decode())))
    def test_any_stored_value_opens_or_is_none(value):
        sealer = _Sealer(load_cache_keys(CACHE_KEY))
        assert sealer.open(b"aad", value) is None

    @FUZZ
    @hypothesis.given(st.sampled_from(["redis://", "rediss://", "unix://", "http://", ""]),
                      st.booleans(), st.text(max_size=40))
    def test_any_url_gives_a_cache_or_a_configuration_error(scheme, password, rest):
        url = scheme + (":s3cr3t-pw@" if password else "") + rest
        try:
            cache = RedisTokenCache.from_url(url, CACHE_KEY)
        except ConfigurationError as exc:
            assert "s3cr3t" not in str(exc)
            return
        assert isinstance(cache, RedisTokenCache) and "s3cr3t" not in repr(cache)
