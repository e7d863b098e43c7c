"""No credential in any message, log line or CLI output, even when a peer echoes it back.

The loopback authorization server and IdP run with ``echo_credentials``: every error's
``error_description`` repeats the raw form body (URL-encoded values), the Authorization
header (Base64 of the form-encoded ``id:secret``), the decoded pair and every decoded
form value. Whatever mcpauth shows of that must hold none of the credentials, in any of
those forms, nor any 16-character piece of one.
"""

import base64
import gc
import io
import json
import logging
import pickle
import re
import time
from urllib.parse import parse_qsl, quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpauth import (
    BearerTokenProvider,
    ClientCredentialsProvider,
    MCPAuthError,
    OAuthError,
    UnauthorizedError,
    cli,
)
from mcpauth import _mask
from mcpauth._mask import MASK, MIN_LENGTH, mask
from mcpauth.errors import clean_peer_text
from mcpauth.testing import LoopbackStack

pytestmark = pytest.mark.e2e

# A secret that every encoding changes: '+', '/', '=', '&', '%', ':', '~', '@', non-ASCII.
SECRET = "K9+/=&%:~s3cr3t-p@ss-\u00e9t\u00e9-2026"
CLIENT_ID = "client:one@example"


def encodings(value):
    forms = {value, quote_plus(value, safe=""), quote(value, safe="")}
    forms |= {f.lower() for f in forms if "%" in f}  # lower-case hex (crude but stricter)
    return forms


def basic_forms(client_id, secret):
    pairs = {client_id + ":" + secret,
             quote_plus(client_id, safe="") + ":" + quote_plus(secret, safe="")}
    return pairs | {base64.b64encode(p.encode()).decode().rstrip("=") for p in pairs}


def assert_masked(text, *credentials, basic=None):
    """None of the credentials, in any form, nor a 16-character piece of one, in text."""
    forms = set()
    for value in credentials:
        forms |= encodings(value)
    if basic is not None:
        forms |= basic_forms(*basic)
    for form in forms:
        assert form not in text, "a credential form leaked: %r in %r" % (form[:12], text[:300])
    for value in credentials:
        for i in range(0, max(len(value) - 16, 0) + 1):
            assert value[i:i + 16] not in text, "a piece of a credential leaked"


def shown(exc):
    """Everything an exception shows: str, repr, peer attributes, after pickling too."""
    copy = pickle.loads(pickle.dumps(exc))
    parts = [str(exc), repr(exc), str(copy), repr(copy)]
    for name in ("error", "error_description", "error_uri", "scope", "required_scope"):
        parts.append(str(getattr(exc, name, "")))
    return "\n".join(parts)


@pytest.fixture
def stack():
    with LoopbackStack(client_id=CLIENT_ID, client_secret=SECRET) as s:
        s.as_.echo_credentials = True
        yield s


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_secret_echoed_by_the_as_is_masked(stack, caplog, method):
    caplog.set_level(logging.DEBUG, "mcpauth")
    provider = ClientCredentialsProvider(CLIENT_ID, SECRET, server_url=stack.mcp_url,
                                         token_endpoint_auth_method=method)
    stack.as_.fail_next("invalid_request", status=400)
    with pytest.raises(OAuthError) as info:
        provider.token()
    echoed = stack.as_.token_requests()[-1]
    assert "received:" in (info.value.error_description or "")
    assert MASK in info.value.error_description
    assert_masked(shown(info.value) + caplog.text, SECRET, basic=(CLIENT_ID, SECRET))
    # The echo really carried the credential (so the test proves something).
    body = echoed.body.decode()
    assert quote_plus(SECRET, safe="") in body or echoed.headers.get("Authorization")


def test_a_real_failure_echoing_a_wrong_secret_is_masked(stack):
    wrong = SECRET + "-old"
    provider = ClientCredentialsProvider(CLIENT_ID, wrong, server_url=stack.mcp_url)
    with pytest.raises(OAuthError) as info:
        provider.token()
    assert info.value.error == "invalid_client"
    assert_masked(shown(info.value), wrong, basic=(CLIENT_ID, wrong))


def test_renewal_warning_and_access_token_echo_are_masked(caplog):
    now = [1000000.0]

    def clock():
        return now[0]

    with LoopbackStack(client_secret=SECRET,
                       as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        stack.as_.echo_credentials = True
        provider = ClientCredentialsProvider(stack.client_id, SECRET, clock=clock,
                                             server_url=stack.mcp_url)
        token = provider.token()
        now[0] += 3570
        caplog.set_level(logging.DEBUG, "mcpauth")
        stack.as_.fail_next("temporarily_unavailable", status=503,
                            description="your old token was " + token)
        assert provider.token() == token        # still valid: kept, with a WARNING
        assert "stays in use" in caplog.text
        assert_masked(caplog.text, SECRET, token, basic=(stack.client_id, SECRET))
        now[0] += 100                        # expired: the error itself is raised
        provider.hold_off = 0
        stack.as_.fail_next("temporarily_unavailable", status=503,
                            description="your old token was " + token)
        with pytest.raises(OAuthError) as info:
            provider.token()
        assert_masked(shown(info.value) + caplog.text, SECRET, token)


def test_mcp_server_echoing_the_bearer_token_in_its_challenge(stack, session):
    provider = ClientCredentialsProvider(CLIENT_ID, SECRET, server_url=stack.mcp_url)
    token = provider.token()
    challenge = 'Bearer error="invalid_token", error_description="bad token %s"' % token
    stack.mcp.set_route(stack.mcp.path, 401, {"error": "no"},
                        headers=[("WWW-Authenticate", challenge)])
    session.auth = provider
    with pytest.raises(UnauthorizedError) as info:
        session.post(stack.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert MASK in info.value.error_description
    assert_masked(shown(info.value), token, SECRET)


def test_bearer_token_given_as_a_string_is_masked():
    token = "gw-" + "Zx81" * 8
    provider = BearerTokenProvider(token)
    exc = OAuthError("invalid_token", "the token %s is revoked" % token)
    assert_masked(shown(exc), token)
    del provider
    gc.collect()
    # Held only while its owner lives.
    assert token in str(OAuthError("invalid_token", "the token %s" % token))


def test_private_key_jwt_assertion_echoed_is_masked(caplog):
    pytest.importorskip("cryptography")  # signing needs it
    from mcpauth import jws
    from mcpauth import PrivateKeyJwtProvider

    key = jws.generate_private_key("EC", curve="P-256")
    with LoopbackStack(public_jwk=key.public_jwk(), auth_method="private_key_jwt") as stack:
        stack.as_.echo_credentials = True
        caplog.set_level(logging.DEBUG, "mcpauth")
        provider = PrivateKeyJwtProvider(stack.client_id, key, server_url=stack.mcp_url)
        stack.as_.fail_next("invalid_client", status=401)
        with pytest.raises(OAuthError) as info:
            provider.token()
        form = dict(parse_qsl(stack.as_.token_requests()[-1].body.decode()))
        assertion = form["client_assertion"]
        assert assertion.count(".") == 2
        assert_masked(shown(info.value) + caplog.text, assertion)


def test_cross_app_id_token_and_id_jag_echoed_are_masked(caplog):
    pytest.importorskip("cryptography")
    from mcpauth import CrossAppAccessProvider, discover_and_request_jwt_auth_grant

    with LoopbackStack(idp=True, client_secret=SECRET) as stack:
        stack.as_.echo_credentials = True
        stack.idp.echo_credentials = True
        id_token = stack.id_token("alice@example.com")
        idp_secret = stack.idp_client.client_secret

        def assertion(ctx):
            return discover_and_request_jwt_auth_grant(
                stack.idp.issuer, id_token, ctx.authorization_server_url, ctx.resource_url,
                stack.idp_client.client_id, idp_secret, scope=ctx.scope)

        caplog.set_level(logging.DEBUG, "mcpauth")
        provider = CrossAppAccessProvider(assertion, stack.client_id, SECRET,
                                          server_url=stack.mcp_url)
        stack.idp.fail_next("invalid_grant", status=400)      # leg 1: ID token echoed
        with pytest.raises(OAuthError) as leg1:
            provider.token()
        stack.as_.fail_next("invalid_request", status=400)    # leg 2: ID-JAG echoed
        with pytest.raises(OAuthError) as leg2:
            provider.token()
        id_jag = dict(parse_qsl(stack.as_.token_requests()[-1].body.decode()))["assertion"]
        text = shown(leg1.value) + shown(leg2.value) + caplog.text
        assert_masked(text, id_token, id_jag, SECRET, idp_secret,
                      basic=(stack.client_id, SECRET))


def test_workload_jwt_echoed_is_masked(caplog):
    pytest.importorskip("cryptography")  # signing needs it
    from mcpauth import jws
    from mcpauth import WorkloadIdentityProvider

    key = jws.generate_private_key("EC", curve="P-256")
    with LoopbackStack() as stack:
        stack.as_.echo_credentials = True
        stack.as_.trust_workload_issuer("https://platform.example", key.public_jwk(),
                                        allowed_subjects=["wl-1"])
        now = int(time.time())
        jwt = jws.sign({"iss": "https://platform.example", "sub": "wl-1",
                        "aud": stack.issuer, "iat": now, "exp": now + 600, "jti": "j1"},
                       key, "ES256")
        caplog.set_level(logging.DEBUG, "mcpauth")
        provider = WorkloadIdentityProvider(lambda: jwt, server_url=stack.mcp_url)
        stack.as_.fail_next("invalid_grant", status=400)
        with pytest.raises(OAuthError) as info:
            provider.token()
        assert_masked(shown(info.value) + caplog.text, jwt)


def test_cli_stderr_and_verbose_log_are_masked(stack, monkeypatch):
    monkeypatch.setenv("MCPAUTH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MCPAUTH_CLIENT_SECRET", SECRET)
    stack.as_.fail_next("invalid_request", status=400, count=5)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["tools", stack.mcp_url, "--verbose"], stdout=out, stderr=err)
    assert code != 0
    assert "received:" in err.getvalue() and MASK in err.getvalue()
    assert_masked(out.getvalue() + err.getvalue(), SECRET, basic=(CLIENT_ID, SECRET))


def test_masking_happens_before_truncation():
    provider = ClientCredentialsProvider(CLIENT_ID, SECRET,
                                         token_endpoint="https://as.example/token")
    for cut in range(250, 300):
        text = clean_peer_text("x" * cut + SECRET + " tail", 300)
        assert_masked(text, SECRET)
    assert provider.client_id == CLIENT_ID


def test_short_values_are_not_masked_and_unknown_text_is_unchanged():
    provider = BearerTokenProvider("short")
    assert len("short") < MIN_LENGTH
    assert mask("a short word") == "a short word"
    assert provider.token() == "short"


def test_every_exception_message_is_masked():
    provider = ClientCredentialsProvider(CLIENT_ID, SECRET,
                                         token_endpoint="https://as.example/token")
    for exc in (MCPAuthError("x " + SECRET), OAuthError("e", message="m " + SECRET),
                MCPAuthError("form " + quote_plus(SECRET, safe=""))):
        assert_masked(shown(exc), SECRET)
    assert provider.client_id == CLIENT_ID


class _Holder(object):
    """Something that holds a credential (as a ClientAuth does)."""


@given(secret=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=8,
                      max_size=40).filter(lambda s: s.strip() == s),
       before=st.text(max_size=30), after=st.text(max_size=30),
       how=st.sampled_from(["raw", "form", "percent", "lower", "json"]))
@settings(max_examples=300, deadline=None)
def test_property_no_form_of_a_held_credential_survives(secret, before, after, how):
    holder = _Holder()
    _mask.hold(holder, secret)
    form = {"raw": secret, "form": quote_plus(secret, safe=""),
            "percent": quote(secret, safe=""),
            "lower": re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(),
                            quote(secret, safe="")),
            "json": json.dumps(secret)[1:-1]}[how]
    text = clean_peer_text(before + form + after, 10000)
    assert secret not in text
    # A line break where the credential has a space is cleaned into that space.
    if " " in secret:
        assert secret not in clean_peer_text(before + secret.replace(" ", "\n") + after)
    assert quote_plus(secret, safe="") not in text
    del holder


def test_cli_key_password_and_key_text_are_masked_for_the_run():
    pytest.importorskip("cryptography")
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    password = "pw-" + "Hq7e" * 4
    key = ec.generate_private_key(ec.SECP256R1(), default_backend())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()))
    assert cli._load_key(pem, password, "MCPAUTH_PRIVATE_KEY", "--password-file")
    line = pem.decode().splitlines()[1]
    assert mask("told: %s / %s" % (password, line)) == "told: %s / %s" % (MASK, MASK)


def test_an_owner_collected_while_the_mask_lock_is_held_does_not_deadlock():
    """The garbage collector may run an owner's finalizer in a thread that holds the
    masking lock (inside hold or remember): the release must not wait for that lock."""
    import gc
    import threading

    from mcpauth import _mask

    class Owner(object):
        pass

    owner = Owner()
    value = "collected-owner-secret-0123456789"
    _mask.hold(owner, value)
    assert value not in _mask.mask("echo " + value)
    finished = []

    def collect_inside_the_lock():
        nonlocal owner
        with _mask._lock:
            owner = None
            gc.collect()  # the finalizer runs here, in the thread that holds the lock
        finished.append(True)

    worker = threading.Thread(target=collect_inside_the_lock, daemon=True)
    worker.start()
    worker.join(5)
    assert finished, "the finalizer blocked on the masking lock"
    _mask.remember("another-value-to-make-the-registry-drain")
    assert value in _mask.mask("echo " + value)  # released once the lock was free
