"""Hostile input: every parser a peer feeds runs in time linear in its input, every odd
input gets the documented typed error, peer text is cleaned of every control character.

Three parts:

* regressions, one per hostile input found so far (each failed before its fix);
* timing ladders: the worst input known for a parser, doubled in size a few times; the
  time must grow about as fast as the input (ratios with generous bounds, never absolute
  times), so a quadratic path fails at the second doubling;
* the fuzz contract: hypothesis, a bounded number of examples per parser (``FUZZ_EXAMPLES``,
  raised with ``MCPAUTH_FUZZ_EXAMPLES`` for a long campaign), inputs of any type with lone
  surrogates and control characters among them; each parser may raise only what its
  docstring says.
"""

import base64
import gc
import json
import os
import time

import pytest

from mcpauth import discovery, grants, jws
from mcpauth.errors import (
    ConfigurationError,
    DiscoveryError,
    InsecureEndpointError,
    InvalidKeyError,
    MCPAuthError,
    ProtocolError,
    ResourceMismatchError,
    TokenResponseError,
    clean_peer_text,
)
from mcpauth.transport import (
    MAX_JSON_INT_DIGITS,
    HttpResponse,
    check_url,
    loads_json,
    parse_json_object,
    redact_url,
)

try:
    import hypothesis
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    hypothesis = None

try:
    import cryptography  # noqa: F401
except ImportError:  # pragma: no cover - the nocrypto env
    HAVE_CRYPTOGRAPHY = False
else:
    HAVE_CRYPTOGRAPHY = True

needs_crypto = pytest.mark.skipif(not HAVE_CRYPTOGRAPHY, reason="needs cryptography")

JSON = (("Content-Type", "application/json"),)
MCP = "https://mcp.example/mcp"
PRM_URL = "https://mcp.example/.well-known/oauth-protected-resource/mcp"
AS1 = "https://as.example"

# Every character a peer may not put into a message or log line as it is: C0, DEL, C1
# (NEL among them), format characters (bidi overrides), line/paragraph separators, and
# lone surrogates.
UNSAFE_SAMPLES = ["\x00", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029",
                  "\u202e", "\u200b", "\u2066", "\ufeff", "\ud800", "\udfff"]


def _prm(doc, url=PRM_URL):
    return HttpResponse(200, JSON, json.dumps(doc).encode("utf-8"), url)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(n):
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


# ====================================================================== regressions

def test_clean_peer_text_replaces_every_control_and_separator_character():
    for ch in UNSAFE_SAMPLES:
        cleaned = clean_peer_text("a" + ch + "b")
        assert cleaned == "a b", repr(ch)
    assert clean_peer_text("caf\u00e9 \u65e5\u672c ok") == "caf\u00e9 \u65e5\u672c ok"


def test_clean_peer_text_cuts_before_cleaning():
    huge = "\u2028x" * (1024 * 1024)
    assert clean_peer_text(huge, 300) == " x" * 150 + "..."
    assert clean_peer_text(huge, 2) == " x..."
    assert clean_peer_text("\u2028x", 2) == " x"


@pytest.mark.parametrize("ch", ["\u2028", "\x85", "\u202e", "\u2029"])
def test_resource_mismatch_message_and_received_are_cleaned(ch):
    prm = discovery.parse_protected_resource_metadata(
        _prm({"resource": "https://mcp.example/m" + ch + "INJECTED", "authorization_servers":
              [AS1]}))
    with pytest.raises(ResourceMismatchError) as info:
        discovery.validate_resource(prm, MCP)
    for text in (str(info.value), info.value.received, repr(info.value)):
        assert ch not in text
    assert "INJECTED" in info.value.received  # the rest is kept, so a reader can tell why


@pytest.mark.parametrize("ch", ["\u2028", "\x85", "\u202e"])
def test_authorization_server_mismatch_is_cleaned(ch):
    from mcpauth.errors import AuthorizationServerMismatchError

    listed = "https://evil.example/a" + ch + "b"
    response = _prm({"resource": MCP, "authorization_servers": [listed]})

    def transport(request):
        return response._replace(url=request.url)

    with pytest.raises(AuthorizationServerMismatchError) as info:
        discovery.discover(transport, MCP, expected_issuer=AS1)
    for text in (str(info.value), info.value.issuer, repr(info.value)):
        assert ch not in text


@pytest.mark.parametrize("ch", ["\u2028", "\x85", "\u2029"])
def test_same_origin_refusal_message_is_cleaned(ch):
    with pytest.raises(DiscoveryError) as info:
        discovery.validate_resource_metadata_url(
            "https://other.example/x" + ch + "y", MCP, same_origin=True)
    assert ch not in str(info.value)


def test_redact_url_never_returns_a_control_character():
    for ch in UNSAFE_SAMPLES:
        assert ch not in redact_url("https://as.example/p" + ch + "q?secret=1")


@pytest.mark.parametrize("bad", ["read\u2028write", "a\x85", "x y" + "\x00", "\u00e9"])
def test_a_bad_scopes_supported_entry_is_the_peers_fault(bad):
    response = _prm({"resource": MCP, "authorization_servers": [AS1],
                     "scopes_supported": ["ok", bad]})
    with pytest.raises(DiscoveryError) as info:
        discovery.parse_protected_resource_metadata(response)
    assert not isinstance(info.value, ConfigurationError)
    assert bad not in str(info.value)


def test_normalize_scope_keeps_first_occurrence_order_and_drops_duplicates():
    assert grants.normalize_scope(["b", "a", "", "b", "c", "a"]) == "b a c"
    assert grants.normalize_scope([]) is None
    with pytest.raises(ConfigurationError):
        grants.normalize_scope(["a", 3])


def test_loads_json_refuses_huge_integers():
    with pytest.raises(ValueError):
        loads_json("[" + "7" * (MAX_JSON_INT_DIGITS + 1) + "]")
    with pytest.raises(ValueError):
        loads_json("-" + "7" * 1000000)
    assert loads_json("[" + "7" * MAX_JSON_INT_DIGITS + "]") == [int("7" * MAX_JSON_INT_DIGITS)]
    assert loads_json('{"n": -12, "f": 1.5e3}') == {"n": -12, "f": 1500.0}


def test_a_million_digit_integer_in_a_token_response_is_a_typed_error():
    body = ('{"access_token": "t", "token_type": "Bearer", "expires_in": '
            + "9" * 1000000 + "}").encode("ascii")
    with pytest.raises(TokenResponseError):
        grants.parse_token_response(HttpResponse(200, JSON, body, AS1 + "/token"))


@pytest.mark.parametrize("value", [None, b"{}", 3, ["{}"]])
def test_loads_json_of_a_non_string_is_a_value_error(value):
    with pytest.raises(ValueError):
        loads_json(value)


@pytest.mark.parametrize("value", [None, 3, 1.5, [], {}, object()])
def test_decode_unverified_of_a_non_string_is_a_value_error(value):
    with pytest.raises(ValueError):
        jws.decode_unverified(value)


@pytest.mark.parametrize("url", ["https://[zz]/mcp", "https://[::1/mcp", "https://[v1.x]/mcp",
                                 "https://[1.2.3.4]/mcp", "https://h:99999/mcp"])
def test_a_malformed_ipv6_server_url_is_a_configuration_error(url):
    from mcpauth import ClientCredentialsProvider

    with pytest.raises(ConfigurationError):
        ClientCredentialsProvider("id", "secret", server_url=url)
    provider = ClientCredentialsProvider("id", "secret")
    with pytest.raises(MCPAuthError):
        provider.token(url)
    with pytest.raises(InsecureEndpointError):
        check_url(url)
    redact_url(url)  # never raises


@needs_crypto
@pytest.mark.parametrize("kty", [["RSA"], {"RSA": 1}, 1, None, "rsa", "\ud800"])
def test_a_jwk_kty_of_the_wrong_type_is_an_invalid_key_error(kty):
    jwk = {"kty": kty, "crv": "P-256", "x": "AA", "y": "AA", "d": "AA", "n": "AA", "e": "AQAB"}
    for call in (lambda: jws.load_private_key(jwk), lambda: jws.public_jwk(jwk),
                 lambda: jws.jwk_thumbprint(jwk), lambda: jws.verify("a.b.c", jwk, ["ES256"])):
        with pytest.raises(InvalidKeyError):
            call()


@needs_crypto
def test_lone_surrogates_in_passwords_and_jwk_members_are_invalid_key_errors():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1(), jws.backend()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"password"))
    with pytest.raises(InvalidKeyError):
        jws.load_private_key(pem, password="pass\ud800word")
    with pytest.raises(InvalidKeyError):
        jws.jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "A\udc00", "y": "AA"})
    with pytest.raises(InvalidKeyError):
        jws.load_private_key({"kty": "EC", "crv": "P-256", "d": "A\udc00"})
    with pytest.raises(InvalidKeyError):
        jws.public_jwk({"kty": "OKP", "crv": "Ed25519", "x": "\ud800"})


@needs_crypto
def test_an_ec_key_with_an_altered_public_point_is_an_invalid_key_error():
    # cryptography 3.2.1 (RHEL 8) raised AssertionError from inside its OpenSSL bindings.
    from cryptography.hazmat.primitives import serialization

    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1(), jws.backend())
    for fmt, label in ((serialization.PrivateFormat.TraditionalOpenSSL, b"EC PRIVATE KEY"),
                       (serialization.PrivateFormat.PKCS8, b"PRIVATE KEY")):
        der = key.private_bytes(serialization.Encoding.DER, fmt,
                                serialization.NoEncryption())
        for i in range(len(der) - 64, len(der)):  # the point's Y coordinate
            altered = bytearray(der)
            altered[i] ^= 1
            pem = (b"-----BEGIN " + label + b"-----\n" + base64.encodebytes(bytes(altered))
                   + b"-----END " + label + b"-----\n")
            for data in (bytes(altered), pem):
                try:
                    jws.load_private_key(data)
                except InvalidKeyError:
                    pass


@needs_crypto
def test_an_rsa_jwk_over_the_size_bound_is_refused_before_any_arithmetic():
    # A 16384-bit modulus: the consistency check took seconds. The primes need not be
    # real: the size is checked first.
    n = (1 << 16383) | 1
    jwk = {"kty": "RSA", "n": _uint(n), "e": "AQAB", "d": _uint(n - 2)}
    start = time.perf_counter()
    for call in (lambda: jws.load_private_key(jwk), lambda: jws.public_jwk(jwk)):
        with pytest.raises(InvalidKeyError) as info:
            call()
        assert "at most 8192" in str(info.value)
    assert time.perf_counter() - start < 1.0  # generous: the fix makes it microseconds
    # An exponent as large as the modulus is refused too (pow() would cost seconds).
    n = (1 << 8191) | 1
    with pytest.raises(InvalidKeyError):
        jws.load_private_key({"kty": "RSA", "n": _uint(n), "e": _uint(n + 2), "d": "Aw"})


# ====================================================================== timing ladders

def _per_call(func, arg):
    """CPU seconds per call of func(arg): best of 3, each repeated to at least 20 ms.

    CPU time of this process (its threads included), not wall time: on a shared CI
    machine the time spent waiting for a core would otherwise swamp the ratios. The
    cyclic garbage collector is off while timing: its passes cost in proportion to
    everything the test process holds, not to the input.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return _best_per_call(func, arg)
    finally:
        if enabled:
            gc.enable()


def _best_per_call(func, arg):
    best = None
    for _ in range(3):
        reps, start = 0, time.process_time()
        while True:
            func(arg)
            reps += 1
            elapsed = time.process_time() - start
            if elapsed >= 0.02:
                break
        per = elapsed / reps
        best = per if best is None else min(best, per)
        if per > 1.0:
            break  # already slow: one measurement says enough
    return best


def _ladder(make, func, first, doublings=3, slack=3.0, growth=2, attempts=3):
    """Assert func(make(size)) grows about linearly over first * 2**k (k = 0..doublings).

    Linear code keeps t(2**k n) / t(n) near 2**k; ``slack`` absorbs noise on a shared
    machine, and a ladder that breaks the bound is measured again (up to ``attempts``
    times) before it fails. A quadratic parser (4**k) fails at k = 2, every time, before
    inputs get large. With ``growth=1`` the time must not grow at all (a linear one fails
    at k = 2). Returns [(size, seconds)] for the report.
    """
    inputs = {}
    for _attempt in range(attempts):
        timings = []
        base = None
        for k in range(doublings + 1):
            size = first << k
            if size not in inputs:
                inputs[size] = make(size)
            seconds = _per_call(func, inputs[size])
            timings.append((size, seconds))
            if base is None:
                base = max(seconds, 1e-5)
            elif seconds / base > slack * growth ** k:
                break
        else:
            return timings
    raise AssertionError("{} is not linear: {}".format(func.__name__, timings))


def _swallow(*errors):
    def wrap(func):
        def call(arg):
            try:
                func(arg)
            except errors:
                pass
        call.__name__ = func.__name__
        return call
    return wrap


def _json_worst(size):
    # >200 brackets (so the nesting pre-scan runs), then an unterminated string of \" .
    return "[]" * 201 + '"' + '\\"' * (size // 2)


def test_ladder_loads_json_nesting_prescan():
    _ladder(_json_worst, _swallow(ValueError)(loads_json), 16 * 1024)


def test_ladder_loads_json_long_integers():
    # Python before 3.11 has no limit on int() digits, and its conversion is quadratic:
    # a million digits took 4.5 s on 3.6.
    _ladder(lambda size: "[" + "7" * size + "]", _swallow(ValueError)(loads_json),
            64 * 1024)


def test_ladder_loads_json_deep_but_balanced():
    _ladder(lambda size: "[" * 150 + "[]," * (size // 3) + "[]" + "]" * 150,
            _swallow(ValueError)(loads_json), 16 * 1024)


def test_ladder_normalize_scope():
    _ladder(lambda size: ["scope%d" % i for i in range(size)] * 2,
            grants.normalize_scope, 4096)


def test_ladder_protected_resource_metadata_scopes():
    def make(size):
        return _prm({"resource": MCP, "authorization_servers": [AS1],
                     "scopes_supported": ["s%d" % i for i in range(size)]})
    _ladder(make, discovery.parse_protected_resource_metadata, 4096)


def test_ladder_cached_token_with_many_scopes_supported():
    # The scope asked for (every PRM scopes_supported entry) is part of the token cache
    # key, so it is needed on every call; it was recomputed quadratically each time.
    from mcpauth import ClientCredentialsProvider
    from mcpauth.testing import LoopbackStack

    stacks = []

    def make(size):
        stack = LoopbackStack(mcp_options={"scopes_supported": [
            "mcp:%d" % i for i in range(size)]})
        stacks.append(stack)
        stack.start()
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             server_url=stack.mcp_url)
        provider.token()  # discovery and the token request happen once
        assert len(stack.as_.token_requests()) == 1
        return provider

    def cached_token(provider):
        return provider.token()

    try:
        _ladder(make, cached_token, 2500)
    finally:
        for stack in stacks:
            stack.stop()
    assert all(len(stack.as_.token_requests()) == 1 for stack in stacks)


def test_ladder_clean_peer_text_is_flat():
    # Cut before cleaning: the cost does not grow with the input at all (cleaning 16 MiB
    # first took seconds).
    _ladder(lambda size: "\u2028" * size, clean_peer_text, 256 * 1024, slack=3, growth=1)


def test_ladder_www_authenticate():
    _ladder(lambda size: 'Bearer realm="' + '\\"' * size + ', x=' + "a," * size,
            discovery.parse_www_authenticate, 4096)


def test_ladder_token_response():
    def make(size):
        return HttpResponse(200, JSON, _json_worst(size).encode("ascii"), AS1 + "/token")
    _ladder(make, _swallow(TokenResponseError)(grants.parse_token_response), 16 * 1024)


def test_ladder_decode_unverified():
    def make(size):
        part = _b64(_json_worst(size).encode("ascii"))
        return part + "." + part + ".sig"
    _ladder(make, _swallow(ValueError)(jws.decode_unverified), 16 * 1024)


@needs_crypto
def test_ladder_jwk_text():
    def make(size):
        return '{"kty": "EC", "crv": "P-256", "d": ' + _json_worst(size)
    _ladder(make, _swallow(InvalidKeyError)(jws.load_private_key), 16 * 1024)


# ====================================================================== fuzz contract

#: Examples per parser in the default run; MCPAUTH_FUZZ_EXAMPLES raises it.
FUZZ_EXAMPLES = int(os.environ.get("MCPAUTH_FUZZ_EXAMPLES", "150"))

if hypothesis is not None:
    _FUZZ = hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                                suppress_health_check=list(hypothesis.HealthCheck))

    # Text with lone surrogates, controls, separators and JSON/URL punctuation mixed in.
    _ODD_CHARS = st.sampled_from(UNSAFE_SAMPLES + ['"', "\\", "[", "{", "}", "]", ":", "/",
                                                   "%", "@", "#", "?", "=", " ", ".", "-"])
    _TEXT = st.lists(st.text(max_size=8) | _ODD_CHARS, max_size=20).map("".join)
    _SCALAR = (st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
               | st.binary(max_size=20))
    _KEYS_SEEN = st.sampled_from(["kty", "crv", "x", "y", "d", "n", "e", "p", "q", "alg",
                                  "resource", "issuer", "access_token", "token_type",
                                  "expires_in", "scope"])

    def _any_container(inner):
        return (st.lists(inner, max_size=4) | st.tuples(inner)
                | st.dictionaries(_KEYS_SEEN | _TEXT, inner, max_size=6))

    def _json_container(inner):
        return st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4)

    _ANY = st.recursive(_SCALAR, _any_container, max_leaves=12)
    _JSON_TEXT = st.one_of(
        _TEXT,
        st.recursive(st.none() | st.booleans() | st.integers() | _TEXT, _json_container,
                     max_leaves=10).map(lambda v: json.dumps(v, ensure_ascii=False)))

    def _bodies(text):
        return text.encode("utf-8", "surrogatepass")

    @_FUZZ
    @hypothesis.given(_ANY | _JSON_TEXT)
    def test_fuzz_loads_json(value):
        _only(lambda: loads_json(value), ValueError)

    @_FUZZ
    @hypothesis.given(_JSON_TEXT, st.sampled_from([200, 400, 401, 500]),
                      st.sampled_from(["application/json", "text/html", "", "\u2028"]))
    def test_fuzz_metadata_and_token_parsers(text, status, ctype):
        response = HttpResponse(status, (("Content-Type", ctype),), _bodies(text), PRM_URL)
        for call in (lambda: parse_json_object(response, "x"),
                     lambda: discovery.parse_protected_resource_metadata(response),
                     lambda: discovery.parse_authorization_server_metadata(response, AS1),
                     lambda: grants.parse_token_response(response)):
            try:
                call()
            except (ProtocolError, InsecureEndpointError) as exc:
                _assert_clean(exc)
            except MCPAuthError as exc:  # OAuthError for a 400/401 error body
                assert not isinstance(exc, ConfigurationError), exc
                _assert_clean(exc)

    @_FUZZ
    @hypothesis.given(_ANY)
    def test_fuzz_www_authenticate(value):
        if isinstance(value, str) or value is None:
            assert isinstance(discovery.parse_www_authenticate(value), list)
            for challenge in discovery.parse_www_authenticate(value):
                assert isinstance(challenge.scheme, str)

    @_FUZZ
    @hypothesis.given(_ANY)
    def test_fuzz_urls(value):
        for call, errors in (
                (lambda: check_url(value), (InsecureEndpointError,)),
                (lambda: discovery.protected_resource_metadata_urls(value),
                 (ConfigurationError,)),
                (lambda: discovery.authorization_server_metadata_urls(value),
                 (DiscoveryError,)),
                (lambda: discovery.validate_resource_metadata_url(value, MCP, same_origin=True),
                 (DiscoveryError,))):
            try:
                call()
            except errors as exc:
                _assert_clean(exc)
        if isinstance(value, str):
            assert all(ch not in redact_url(value) for ch in UNSAFE_SAMPLES)

    @_FUZZ
    @hypothesis.given(_ANY)
    def test_fuzz_peer_text(value):
        cleaned = clean_peer_text(value)
        if not isinstance(value, str):
            assert cleaned is None
        else:
            assert all(ch not in cleaned for ch in UNSAFE_SAMPLES)
            cleaned.encode("utf-8")  # writable to any log

    def _only(call, *errors):
        """Run call(); any exception but ``errors`` fails the test."""
        try:
            call()
        except errors:
            pass

    @_FUZZ
    @hypothesis.given(_ANY)
    def test_fuzz_scopes(value):
        _only(lambda: grants.validate_scope(value), ConfigurationError)
        if isinstance(value, (list, tuple)):
            _only(lambda: grants.normalize_scope(value), ConfigurationError)

    @_FUZZ
    @hypothesis.given(_ANY | _JSON_TEXT.map(lambda t: _b64(_bodies(t)) + "." + _b64(b"{}")
                                             + ".x"))
    def test_fuzz_decode_unverified(value):
        _only(lambda: jws.decode_unverified(value), ValueError)

    @_FUZZ
    @hypothesis.given(_ANY)
    def test_fuzz_b64url_decode(value):
        try:
            jws.b64url_decode(value)
        except ValueError:
            pass
        except TypeError:  # documented for what is neither str nor bytes
            assert not isinstance(value, (str, bytes, bytearray))

    @needs_crypto
    @_FUZZ
    @hypothesis.given(_ANY | _JSON_TEXT, st.none() | _TEXT | st.binary(max_size=8))
    def test_fuzz_key_loaders(value, password):
        for call in (lambda: jws.load_private_key(value, password),
                     lambda: jws.public_jwk(value),
                     lambda: jws.jwk_thumbprint(value),
                     lambda: jws.verify("e30.e30.AA", value, ["ES256", "RS256", "EdDSA"])):
            try:
                call()
            except (InvalidKeyError, jws.JWSVerificationError):
                pass

    @needs_crypto
    @_FUZZ
    @hypothesis.given(_ANY | _TEXT)
    def test_fuzz_verify_token(token):
        key = _fuzz_key()
        try:
            jws.verify(token, key, ["ES256"])
        except jws.JWSVerificationError:
            pass
        except TypeError:
            assert not isinstance(token, str)  # documented: token is not str

    _KEYS = []

    def _fuzz_key():
        if not _KEYS:
            _KEYS.append(jws.generate_private_key("EC"))
        return _KEYS[0]

    def _assert_clean(exc):
        text = str(exc)
        assert all(ch not in text for ch in UNSAFE_SAMPLES), repr(text)
        text.encode("utf-8")
else:  # pragma: no cover
    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_fuzz_contract_needs_hypothesis():
        raise AssertionError("unreachable")
