"""FileTokenCache as a trust boundary, and what it does when it cannot be used.

Like OpenSSH's StrictModes: a cache file, or a directory above it, that another local
user owns or can write is not trusted; its content is never used (it could name a token
endpoint of that user's choosing) and nothing is written to it. The run goes on with
an in-memory cache and one warning. So does a run whose cache cannot be written
(read-only file system, full disk). Real files, real modes, a second uid by os.chown
when running as root, real read-only and full file systems where the host allows.
"""

import hashlib
import importlib.util
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import time
import warnings

import pytest

from mcpauth import (ClientCredentialsProvider, ConfigurationError, MCPAuthWarning,
                     OAuthError)
from mcpauth.cache import (FileTokenCache, MemoryTokenCache, credential_fingerprint,
                           discovery_key, token_key)
from mcpauth.grants import TokenResponse
from mcpauth.testing import AuthorizationServer, LoopbackStack
from test_cache import _HOLD_LOCK  # a process that holds the cache lock

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX owners and modes")
is_root = os.name == "posix" and os.geteuid() == 0
root_only = pytest.mark.skipif(not is_root, reason="needs root to give a file to another uid")
needs_cryptography = pytest.mark.skipif(
    importlib.util.find_spec("cryptography") is None, reason="needs the cryptography package")
OTHER_UID = 65534  # nobody


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def document(path):
    with open(str(path), encoding="utf-8") as f:
        return json.load(f)


class Run(object):
    """One cron-like run: a new provider and a new FileTokenCache on ``path``."""

    def __init__(self, stack, path, secret=None, **options):
        options.setdefault("expected_issuer", stack.issuer)
        self.cache = FileTokenCache(path, **options.pop("cache_options", {}))
        self.provider = ClientCredentialsProvider(
            stack.client_id, secret or stack.client_secret, server_url=stack.mcp_url,
            cache=self.cache, **options)

    def token(self):
        return self.provider.token()


def poison(path, token_endpoint):
    """Rewrite every cached discovery result to name ``token_endpoint``, and drop the
    tokens, as a local attacker who can write the file would."""
    doc = document(path)
    for entry in doc["discovery"].values():
        entry["token_endpoint"] = token_endpoint
    doc["tokens"] = {}
    mode_before = mode(path)
    with open(str(path), "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.chmod(str(path), mode_before)


class Warnings(object):
    """Every MCPAuthWarning and every WARNING log record of the block."""

    def __init__(self, caplog):
        self.caplog = caplog

    def __enter__(self):
        self._catch = warnings.catch_warnings(record=True)
        self.warned = self._catch.__enter__()
        warnings.simplefilter("always")
        self.caplog.clear()
        self.caplog.set_level(logging.WARNING, logger="mcpauth")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        self.logged = [r.getMessage() for r in self.caplog.records
                       if r.levelno >= logging.WARNING]
        self.messages = [str(w.message) for w in self.warned
                         if issubclass(w.category, MCPAuthWarning)]


# ---------------------------------------------------------------- untrusted files and directories


def _attack(stack, path, make_untrusted, caplog):
    """A first run fills the cache; a local attacker rewrites it to name their token
    endpoint; the next run (issuer pinned) must not send the secret there."""
    Run(stack, path).token()
    with AuthorizationServer() as evil:
        poison(path, evil.token_endpoint)
        make_untrusted()
        before = path.read_bytes()
        with Warnings(caplog) as seen:
            second = Run(stack, path)
            issued = second.token()
            for _ in range(5):
                assert second.token() == issued
        assert evil.requests == []                      # nothing, not even discovery
    assert len(stack.as_.token_requests()) == 2         # the real AS, once per run
    assert len(seen.messages) == 1, seen.messages       # one warning for the run
    assert len(seen.logged) == 1, seen.logged
    assert str(path) in seen.messages[0]
    assert "in memory" in seen.messages[0]
    assert path.read_bytes() == before                  # nothing written to it
    return seen.messages[0]


@posix_only
@pytest.mark.parametrize("bits", [0o666, 0o620, 0o602])
def test_a_cache_file_others_can_write_is_not_used(tmp_path, caplog, bits):
    path = tmp_path / "tokens.json"
    with LoopbackStack() as stack:
        message = _attack(stack, path, lambda: os.chmod(str(path), bits), caplog)
    assert "can be written by" in message


@posix_only
@root_only
def test_a_cache_file_owned_by_another_user_is_not_used(tmp_path, caplog):
    path = tmp_path / "tokens.json"
    with LoopbackStack() as stack:
        message = _attack(stack, path, lambda: os.chown(str(path), OTHER_UID, OTHER_UID),
                          caplog)
    assert "another user" in message and str(OTHER_UID) in message


@posix_only
def test_a_cache_in_a_shared_directory_is_not_used(tmp_path, caplog):
    """Mode 1777 (like /tmp): others can create the file, its lock or a replacement."""
    shared = tmp_path / "shared"
    shared.mkdir()
    path = shared / "tokens.json"
    with LoopbackStack() as stack:
        message = _attack(stack, path, lambda: os.chmod(str(shared), 0o1777), caplog)
    assert "directory {} can be written by others".format(shared) in message


@posix_only
@root_only
def test_a_cache_in_a_directory_owned_by_another_user_is_not_used(tmp_path, caplog):
    owned = tmp_path / "theirs"
    owned.mkdir(mode=0o700)
    path = owned / "tokens.json"
    with LoopbackStack() as stack:
        message = _attack(stack, path, lambda: os.chown(str(owned), OTHER_UID, OTHER_UID),
                          caplog)
    assert "another user" in message


@posix_only
def test_a_directory_above_that_others_can_write_makes_the_cache_untrusted(tmp_path, caplog):
    """Whoever can write a directory above can rename the cache's directory away and put
    their own in its place."""
    above = tmp_path / "above"
    path = above / "mine" / "tokens.json"
    with LoopbackStack() as stack:
        message = _attack(stack, path, lambda: os.chmod(str(above), 0o777), caplog)
    assert "directory {}".format(above) in message


@posix_only
def test_a_sticky_directory_above_is_fine(tmp_path, caplog):
    """/tmp-like (1777) directories above the cache's own directory cannot have our
    directory renamed away: the cache is used normally."""
    above = tmp_path / "tmp-like"
    above.mkdir()
    os.chmod(str(above), 0o1777)
    path = above / "mine" / "tokens.json"
    with LoopbackStack() as stack:
        with Warnings(caplog) as seen:
            first = Run(stack, path).token()
            assert Run(stack, path).token() == first
        assert len(stack.as_.token_requests()) == 1
    assert seen.messages == [] and seen.logged == []
    assert mode(above / "mine") == 0o700


@posix_only
@pytest.mark.parametrize("bits", [0o644, 0o640, 0o604, 0o610])
def test_a_group_readable_cache_file_is_tightened_to_0600_with_one_warning(tmp_path, caplog,
                                                                           bits):
    path = tmp_path / "tokens.json"
    with LoopbackStack() as stack:
        first = Run(stack, path).token()
        os.chmod(str(path), bits)
        with Warnings(caplog) as seen:
            run = Run(stack, path)
            assert run.token() == first          # not writable by others: still trusted
            assert run.token() == first
        assert mode(path) == 0o600
        assert len(stack.as_.token_requests()) == 1
    assert len(seen.messages) == 1 and "0600" in seen.messages[0]
    assert "readable" in seen.messages[0]


@posix_only
def test_a_symlinked_cache_file_is_neither_read_nor_written_through(tmp_path, caplog):
    elsewhere = tmp_path / "elsewhere.json"
    path = tmp_path / "tokens.json"
    with LoopbackStack() as stack:
        Run(stack, elsewhere).token()
        with AuthorizationServer() as evil:
            poison(elsewhere, evil.token_endpoint)
            os.symlink(str(elsewhere), str(path))
            before = elsewhere.read_bytes()
            with Warnings(caplog) as seen:
                Run(stack, path).token()
            assert evil.requests == []
    assert elsewhere.read_bytes() == before
    assert os.path.islink(str(path))
    assert len(seen.messages) == 1 and "symbolic link" in seen.messages[0]


@posix_only
def test_a_fifo_in_place_of_the_cache_file_neither_hangs_nor_is_used(tmp_path, caplog):
    path = tmp_path / "tokens.json"
    os.mkfifo(str(path), 0o600)
    cache = FileTokenCache(path)
    result = []
    thread = threading.Thread(target=lambda: result.append(cache.get_token("k")), daemon=True)
    with Warnings(caplog) as seen:
        thread.start()
        thread.join(5)
    assert not thread.is_alive() and result == [None]
    assert len(seen.messages) == 1 and "not a regular file" in seen.messages[0]


# ---------------------------------------------------------------- cached discovery vs. policy


def _tampered_run(stack, path, change, caplog, **options):
    Run(stack, path, **options).token()
    doc = document(path)
    for entry in doc["discovery"].values():
        change(entry)
    doc["tokens"] = {}
    path.write_text(json.dumps(doc), encoding="utf-8")
    os.chmod(str(path), 0o600)
    with Warnings(caplog) as seen:
        Run(stack, path, **options).token()
    requests = stack.as_.token_requests()
    assert len(requests) == 2
    # The second run re-discovered, and asked for a token for this server only.
    assert requests[1].form["resource"] == stack.mcp.resource
    assert len(seen.logged) == 1 and "cached discovery" in seen.logged[0]
    return seen


@pytest.mark.parametrize("change", [
    # A look-alike that merely extends the resource string (RFC 8707, RFC 9728 §3.3).
    lambda e: e.update(resource=e["resource"] + "-admin"),
    lambda e: e.update(resource="http://127.0.0.1:9/mcp"),
    # A same-origin prefix: only allow_resource_prefix=True accepts it.
    lambda e: e.update(resource=e["resource"].rsplit("/", 1)[0]),
    # An entry stored for another server URL.
    lambda e: e.update(server_url=e["server_url"] + "-admin"),
    # Plain http to a host that is not loopback: refused by the https policy.
    lambda e: e.update(token_endpoint="http://as.example.invalid/token"),
    lambda e: e.update(issuer="http://as.example.invalid"),
], ids=["resource-extended", "resource-other", "resource-prefix", "server-url",
        "http-endpoint", "http-issuer"])
def test_a_cached_discovery_result_is_rechecked_against_policy(tmp_path, caplog, change):
    with LoopbackStack() as stack:
        _tampered_run(stack, tmp_path / "tokens.json", change, caplog,
                      expected_issuer=None)


def test_a_cached_discovery_result_must_match_the_pin(tmp_path, caplog):
    with LoopbackStack() as stack:
        _tampered_run(stack, tmp_path / "tokens.json",
                      lambda e: e.update(issuer=e["issuer"] + ".evil"), caplog)


def test_a_cached_discovery_result_must_match_a_configured_token_endpoint(tmp_path, caplog):
    with LoopbackStack() as stack:
        with AuthorizationServer() as evil:
            seen = _tampered_run(
                stack, tmp_path / "tokens.json",
                lambda e: e.update(token_endpoint=evil.token_endpoint), caplog,
                expected_issuer=None, issuer=stack.issuer,
                token_endpoint=stack.as_.token_endpoint)
            assert evil.requests == []
    assert "token endpoint" in seen.logged[0]


# ---------------------------------------------------------------- an unwritable cache


def _mount(args, where):
    try:
        done = subprocess.run(["mount"] + args + [str(where)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _umount(where):
    subprocess.run(["umount", str(where)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   timeout=30)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory the cache cannot write: a read-only file system when root (root
    ignores modes), else a 0500 directory."""
    where = tmp_path / "ro"
    where.mkdir(mode=0o700)
    if is_root:
        if not _mount(["-t", "tmpfs", "-o", "ro,mode=0700,size=64k", "tmpfs"], where):
            pytest.skip("running as root and cannot mount a read-only tmpfs")
        try:
            yield where
        finally:
            _umount(where)
    elif os.name == "posix":
        os.chmod(str(where), 0o500)
        try:
            yield where
        finally:
            os.chmod(str(where), 0o700)
    else:  # pragma: no cover
        pytest.skip("POSIX modes")


@pytest.fixture
def full_dir(tmp_path):
    """A directory on a file system with no space left (a tiny tmpfs, filled)."""
    where = tmp_path / "full"
    where.mkdir(mode=0o700)
    if not is_root or not _mount(["-t", "tmpfs", "-o", "mode=0700,size=8k", "tmpfs"], where):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        fd = os.open(str(where / "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(fd)
        yield where
    finally:
        _umount(where)


@pytest.fixture
def not_a_dir(tmp_path):
    """A 'directory' that is a regular file (ENOTDIR): portable, any uid."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    return blocker


@pytest.mark.parametrize("where", ["read_only_dir", "full_dir", "not_a_dir"])
def test_an_unwritable_cache_means_one_warning_then_memory(request, caplog, where):
    """10 calls make 1 token request, with 1 warning (there were 11 and 24)."""
    directory = request.getfixturevalue(where)
    path = directory / "tokens.json"
    with LoopbackStack() as stack:
        with Warnings(caplog) as seen:
            run = Run(stack, path)
            tokens = set(run.token() for _ in range(10))
        assert len(tokens) == 1
        assert len(stack.as_.token_requests()) == 1
        assert len(stack.as_.metadata_requests()) == 1
    assert len(seen.messages) == 1, seen.messages
    assert len(seen.logged) == 1, seen.logged
    assert "in memory" in seen.messages[0] and str(path) in seen.messages[0]
    assert not os.path.exists(str(path))


def test_a_cache_that_stops_being_writable_keeps_its_tokens(tmp_path, caplog):
    """A token that was read from the file, then a failed write: nothing is forgotten."""
    path = tmp_path / "tokens.json"
    cache = FileTokenCache(path)
    key_a = token_key("https://as.example", "https://mcp.example/mcp", "a", None)
    key_b = token_key("https://as.example", "https://mcp.example/mcp", "b", None)
    cache.set_token(key_a, TokenResponse("tok-a", "Bearer", 3600.0))
    cache.set_discovery("https://mcp.example/mcp", {"x": 1})
    os.replace(str(path), str(tmp_path / "moved.json"))
    (tmp_path / "tokens.json").mkdir()      # now neither readable nor replaceable
    (tmp_path / "tokens.json" / "x").write_text("x")
    with Warnings(caplog) as seen:
        cache.set_token(key_b, TokenResponse("tok-b", "Bearer", 3600.0))
        cache.set_token(key_b, TokenResponse("tok-b2", "Bearer", 3600.0))
        assert cache.get_token(key_b).access_token == "tok-b2"
        cache.delete_token(key_b)
        assert cache.get_token(key_b) is None
        assert cache.get_token(key_a).access_token == "tok-a"
        assert cache.get_discovery("https://mcp.example/mcp") == {"x": 1}
    assert len(seen.messages) == 1


@posix_only
def test_a_read_only_cache_with_a_valid_token_still_serves_it(tmp_path, caplog):
    """A pre-filled cache on a read-only file system: the token is used, nothing sent."""
    path = tmp_path / "tokens.json"
    with LoopbackStack() as stack:
        first = Run(stack, path).token()
        os.chmod(str(path), 0o400)
        os.chmod(str(tmp_path), 0o500)
        try:
            with Warnings(caplog) as seen:
                assert Run(stack, path).token() == first
        finally:
            os.chmod(str(tmp_path), 0o700)
        assert len(stack.as_.token_requests()) == 1
    assert seen.messages == []


# ---------------------------------------------------------------- a stuck lock


@posix_only
def test_a_stuck_cache_lock_is_waited_for_once_per_run(tmp_path, caplog):
    """A cold run takes the lock for discovery, then for the token: a stuck process used
    to cost 2 x lock_timeout (two minutes by default), and a warning each time."""
    path = tmp_path / "tokens.json"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path) + ".lock", "30"],
                            stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with LoopbackStack() as stack:
            with Warnings(caplog) as seen:
                run = Run(stack, path, cache_options={"lock_timeout": 1.0})
                start = time.monotonic()
                run.token()
                stack.as_.revoke()
                run.cache.delete_token(next(iter(document(path)["tokens"])))
                run.token()                    # a second token request, same run
                elapsed = time.monotonic() - start
            assert len(stack.as_.token_requests()) == 2
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert 0.9 <= elapsed < 1.8, elapsed
    assert len(seen.messages) == 1 and "held the token cache lock" in seen.messages[0]


# ---------------------------------------------------------------- path and credential


def test_a_tilde_path_is_expanded(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(str(work))
    cache = FileTokenCache("~/.cache/mcpauth/tokens.json")
    assert cache.path == str(home / ".cache" / "mcpauth" / "tokens.json")
    cache.set_token("k", TokenResponse("tok", "Bearer", 60.0))
    assert (home / ".cache" / "mcpauth" / "tokens.json").is_file()
    assert os.listdir(str(work)) == []        # no literal "~" directory


def test_a_wrong_or_rotated_secret_never_reuses_a_cached_token(tmp_path):
    """A deploy's smoke test with a typo in the secret must fail, cache or not."""
    path = tmp_path / "tokens.json"
    with LoopbackStack() as stack:
        first = Run(stack, path).token()
        with pytest.raises(OAuthError) as caught:
            Run(stack, path, secret=stack.client_secret + "x").token()
        assert caught.value.error == "invalid_client"
        assert len(stack.as_.token_requests()) == 2
        # The right secret still finds its own token: nothing was sent.
        assert Run(stack, path).token() == first
        assert len(stack.as_.token_requests()) == 2
        # A rotated secret (registered at the AS) gets a token of its own.
        new_secret = "rotated-" + stack.client_secret
        stack.as_.register_client(stack.client_id, client_secret=new_secret)
        rotated = Run(stack, path, secret=new_secret).token()
        assert rotated != first
        assert len(stack.as_.token_requests()) == 3
        raw = path.read_text(encoding="utf-8")
    assert stack.client_secret not in raw
    assert hashlib.sha256(stack.client_secret.encode()).hexdigest() not in raw


@pytest.mark.crypto
@needs_cryptography
def test_another_private_key_never_reuses_a_cached_token(tmp_path):
    from mcpauth import PrivateKeyJwtProvider, jws

    path = tmp_path / "tokens.json"
    key, other = jws.generate_private_key("EC"), jws.generate_private_key("EC")
    with LoopbackStack() as stack:
        stack.as_.register_client("jwt-client", public_jwk=key.public_jwk(),
                                  auth_method="private_key_jwt")

        def run(k):
            return PrivateKeyJwtProvider("jwt-client", k, server_url=stack.mcp_url,
                                         cache=FileTokenCache(path)).token()

        first = run(key)
        with pytest.raises(OAuthError):
            run(other)
        assert run(key) == first
        assert len(stack.as_.token_requests()) == 2
    raw = path.read_text(encoding="utf-8")
    assert jws.jwk_thumbprint(key) not in raw and jws.jwk_thumbprint(other) not in raw


def test_credential_fingerprint_is_labelled_keyed_and_reveals_nothing():
    fp = credential_fingerprint("client_secret", "s3cret", "client-1")
    assert fp == credential_fingerprint("client_secret", "s3cret", "client-1")
    others = {credential_fingerprint("client_secret", "s3cret2", "client-1"),
              credential_fingerprint("client_secret", "s3cret", "client-2"),
              credential_fingerprint("jwk_thumbprint", "s3cret", "client-1")}
    assert fp not in others and len(others) == 3
    for plain in (hashlib.sha256(b"s3cret").hexdigest(), "s3cret"):
        assert plain not in fp and fp not in plain
    with pytest.raises(ConfigurationError):
        credential_fingerprint("", "s3cret", "c")
    with pytest.raises(ConfigurationError):
        credential_fingerprint("client_secret", "", "c")


def test_only_secrets_are_stretched(monkeypatch):
    # PBKDF2 makes a guess at a weak client secret cost FINGERPRINT_ITERATIONS rounds; a
    # public key's thumbprint or a random label has nothing to guess (one SHA-256).
    import mcpauth.cache as cache_module

    calls = []
    real = hashlib.pbkdf2_hmac

    def counting(name, password, salt, iterations, dklen=None):
        calls.append(iterations)
        return real(name, password, salt, iterations, dklen)

    monkeypatch.setattr(cache_module.hashlib, "pbkdf2_hmac", counting)
    secret = credential_fingerprint("client_secret", "s3cret", "client-1")
    assert calls == [cache_module.FINGERPRINT_ITERATIONS]
    public = credential_fingerprint("jwk_thumbprint", "s3cret", "client-1")
    label = credential_fingerprint("instance", "s3cret", "client-1")
    assert calls == [cache_module.FINGERPRINT_ITERATIONS]
    assert len({secret, public, label}) == 3
    for fp in (public, label):
        assert "s3cret" not in fp and len(fp) == len(secret)


def test_token_key_separates_every_part_including_the_credential():
    base = ("https://as.example", "https://mcp.example/mcp", "client-1", "b a", "fp-1")
    key = token_key(*base)
    assert key == token_key("https://as.example", "https://mcp.example/mcp", "client-1",
                            "a b a", "fp-1")                   # scope is a set
    for i, changed in enumerate(["https://as.example.evil", "https://mcp.example/mcp-admin",
                                 "client-10", "b a c", "fp-2"]):
        other = list(base)
        other[i] = changed
        assert token_key(*other) != key, i
    assert token_key(*base[:4]) != key                         # no credential: another key


def test_two_secrets_in_one_process_and_one_cache_never_share_a_token(tmp_path):
    with LoopbackStack() as stack:
        cache = MemoryTokenCache()
        good = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                         server_url=stack.mcp_url, cache=cache)
        bad = ClientCredentialsProvider(stack.client_id, "wrong", server_url=stack.mcp_url,
                                        cache=cache)
        good.token()
        with pytest.raises(OAuthError):
            bad.token()


def test_discovery_key_is_the_one_scheme_for_discovery_entries():
    a = discovery_key("https://mcp.example/mcp", "c", None, None, None, None, False)
    assert a != discovery_key("https://mcp.example/mcp-admin", "c", None, None, None,
                              None, False)
    assert a != discovery_key("https://mcp.example/mcp", "c", "https://as.example", None,
                              None, None, False)
    assert json.loads(a)[0] == "https://mcp.example/mcp"


@pytest.mark.crypto
@needs_cryptography
def test_a_signer_is_tied_to_its_declared_public_key_or_else_to_its_provider(tmp_path):
    """An HSM/KMS signer: tokens follow the declared public JWK's thumbprint (reused by
    the next run); with no declared key, a signer cannot be told from another one, so
    its tokens stay with its provider instance."""
    from mcpauth import PrivateKeyJwtProvider, jws

    path = tmp_path / "tokens.json"
    key = jws.generate_private_key("EC")
    with LoopbackStack() as stack:
        stack.as_.register_client("hsm-client", public_jwk=key.public_jwk(),
                                  auth_method="private_key_jwt")

        def run(**how):
            return PrivateKeyJwtProvider("hsm-client", signer=lambda d: key.sign(d, "ES256"),
                                         server_url=stack.mcp_url, cache=FileTokenCache(path),
                                         **how).token()

        first = run(public_jwk=key.public_jwk())
        assert run(public_jwk=key.public_jwk()) == first
        assert len(stack.as_.token_requests()) == 1
        assert run(algorithm="ES256") != first
        assert run(algorithm="ES256") != first
        assert len(stack.as_.token_requests()) == 3
