"""Back-off while the authorization server is down (RFC 9110 §10.2.3 Retry-After, RFC 6585 §4).

After a retryable token-request failure nothing more is sent to that token endpoint until
``Retry-After`` (capped at ``max_retry_after``) has passed, for every provider of the
process; without the header, the failing provider holds off for ``hold_off`` seconds.
Calls in between fail fast with the same retryable error, carrying ``retry_after``; the
first call after the window tries again. Real loopback servers throughout.
"""

import email.utils
import logging
import pickle
import socket
import time

import pytest

from mcpauth import (
    ClientCredentialsProvider,
    MCPAuthError,
    OAuthError,
    TokenResponseError,
    TransportError,
    providers,
)
from mcpauth._holdoff import HoldOff
from mcpauth.grants import retry_after_seconds
from mcpauth.testing import LoopbackStack

pytestmark = pytest.mark.e2e

OUTAGE = 1000  # more failures queued than any test makes requests


@pytest.fixture
def stack():
    with LoopbackStack() as s:
        yield s


@pytest.fixture(autouse=True)
def _forget_process_wide_holds():
    yield
    providers._AUTHORIZATION_SERVERS.clear()


def make_provider(stack, client_id=None, secret=None, **kw):
    p = ClientCredentialsProvider(client_id or stack.client_id,
                                  secret or stack.client_secret,
                                  token_endpoint=stack.as_.token_endpoint,
                                  issuer=stack.issuer, server_url=stack.mcp_url, **kw)
    return p


def outage(stack, retry_after=None, status=503, error="temporarily_unavailable"):
    headers = [("Retry-After", retry_after)] if retry_after is not None else []
    stack.as_.fail_next(error, status=status, count=OUTAGE, headers=headers)


def calls(provider, n):
    """Make n calls; return the errors (every call must fail)."""
    errors = []
    for _ in range(n):
        with pytest.raises(MCPAuthError) as info:
            provider.token()
        errors.append(info.value)
    return errors


def test_100_calls_during_an_outage_with_retry_after_make_one_request(stack):
    provider = make_provider(stack)
    outage(stack, retry_after="2")
    errors = calls(provider, 100)
    assert len(stack.as_.token_requests()) == 1
    assert all(type(e) is OAuthError and e.retryable for e in errors)
    assert all(e.error == "temporarily_unavailable" and e.status_code == 503 for e in errors)
    assert errors[0].retry_after == 2
    assert all(0 < e.retry_after <= 2 for e in errors[1:])
    assert errors[-1].retry_after <= errors[1].retry_after
    assert "no request sent" in str(errors[-1]) and "no request sent" not in str(errors[0])


def test_100_calls_during_an_outage_without_retry_after_make_one_request(stack):
    provider = make_provider(stack)
    outage(stack)
    errors = calls(provider, 100)
    assert len(stack.as_.token_requests()) == 1
    assert all(e.retryable and 0 < e.retry_after <= provider.hold_off for e in errors)


@pytest.mark.parametrize("retry_after", ["1", None])
def test_the_first_call_after_the_window_tries_again_and_recovers(stack, retry_after):
    provider = make_provider(stack)
    provider.hold_off = 1.0
    headers = [("Retry-After", retry_after)] if retry_after else []
    stack.as_.fail_next("temporarily_unavailable", status=503, count=2, headers=headers)
    calls(provider, 5)
    assert len(stack.as_.token_requests()) == 1
    time.sleep(1.05)
    calls(provider, 5)          # second failure, a new window
    assert len(stack.as_.token_requests()) == 2
    time.sleep(1.05)
    assert provider.token()
    assert len(stack.as_.token_requests()) == 3


def test_retry_after_is_capped(stack):
    provider = make_provider(stack)
    provider.max_retry_after = 1.0
    outage(stack, retry_after="86400")
    (first,) = calls(provider, 1)
    assert first.retry_after == 1.0
    time.sleep(1.05)
    calls(provider, 1)
    assert len(stack.as_.token_requests()) == 2


def test_retry_after_as_an_http_date(stack):
    provider = make_provider(stack)
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    outage(stack, retry_after=when)
    (first,) = calls(provider, 1)
    assert 1 <= first.retry_after <= 3.5


def test_429_retry_after_without_an_oauth_body_is_honoured(stack):
    provider = make_provider(stack)
    stack.as_.set_route(stack.as_.token_path, 429, "slow down", method="POST", times=OUTAGE,
                        headers=[("Retry-After", "2")])
    errors = calls(provider, 20)
    assert len(stack.as_.token_requests()) == 1
    assert all(type(e) is TokenResponseError and e.status_code == 429 for e in errors)
    assert errors[0].retry_after == 2 and all(e.retry_after > 0 for e in errors)


def test_retry_after_holds_every_provider_of_that_authorization_server(stack):
    stack.as_.register_client("second", client_secret="second-secret")
    first = make_provider(stack)
    second = make_provider(stack, "second", "second-secret")
    outage(stack, retry_after="2")
    calls(first, 1)
    (held,) = calls(second, 1)
    assert len(stack.as_.token_requests()) == 1
    assert held.retryable and 0 < held.retry_after <= 2


def test_without_retry_after_the_hold_off_is_per_provider(stack):
    stack.as_.register_client("second", client_secret="second-secret")
    first = make_provider(stack)
    second = make_provider(stack, "second", "second-secret")
    outage(stack)
    calls(first, 3)
    calls(second, 3)
    assert len(stack.as_.token_requests()) == 2


def test_an_unreachable_token_endpoint_is_held_off_too():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    provider = ClientCredentialsProvider(
        "c", "s", token_endpoint="http://127.0.0.1:%d/token" % port,
        issuer="http://127.0.0.1:%d" % port, server_url="http://127.0.0.1:1/mcp")
    provider.hold_off = 60.0
    started = time.monotonic()
    errors = calls(provider, 100)
    assert all(isinstance(e, TransportError) for e in errors)
    assert all(e.retry_after and e.retry_after <= 60 for e in errors)
    # 99 calls answered from the hold: no 99 connection attempts.
    assert time.monotonic() - started < 2.0


def test_non_retryable_errors_are_not_held(stack):
    provider = make_provider(stack)
    stack.as_.fail_next("invalid_client", status=401, count=3)
    errors = calls(provider, 3)
    assert len(stack.as_.token_requests()) == 3
    assert all(e.retry_after is None for e in errors)


def test_a_still_valid_token_is_used_during_the_outage_with_one_renewal_attempt(caplog):
    now = [1000000.0]

    def clock():
        return now[0]

    with LoopbackStack(as_options={"clock": clock, "token_lifetime": 3600}) as stack:
        provider = make_provider(stack, clock=clock)
        token = provider.token()
        now[0] += 3570       # in the renewal window, still valid
        outage(stack, retry_after="30")
        caplog.set_level(logging.WARNING, "mcpauth")
        for _ in range(100):
            assert provider.token() == token
        assert len(stack.as_.token_requests()) == 2
        assert caplog.text.count("stays in use") == 1


def test_retry_after_survives_pickling(stack):
    provider = make_provider(stack)
    outage(stack, retry_after="2")
    first, held = calls(provider, 2)
    for exc in (first, held):
        copy = pickle.loads(pickle.dumps(exc))
        assert copy.retry_after == exc.retry_after and copy.retryable
        assert str(copy) == str(exc)


@pytest.mark.parametrize("value, expected", [
    ("0", 0.0), ("120", 120.0), (" 5 ", 5.0), ("-1", None), ("1.5", None), ("", None),
    ("soon", None), (None, None), ("99999999999999999999", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
])
def test_retry_after_parsing(value, expected):
    assert retry_after_seconds(value) == expected


def test_discovery_during_an_outage_is_held_off_too(stack):
    # Cold provider, authorization server metadata answering 503: one attempt, then
    # the same retryable DiscoveryError at once until the hold-off ends.
    provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                         server_url=stack.mcp_url)
    provider.hold_off = 0.5
    stack.as_.set_route(stack.as_.metadata_path, 503, "down", method="GET", times=OUTAGE)
    errors = calls(provider, 100)
    assert all(e.retryable and e.retry_after for e in errors)
    assert len(stack.as_.requests_to(stack.as_.metadata_path, "GET")) == 1
    stack.as_.clear_route()
    time.sleep(0.55)
    assert provider.token()


def test_a_shorter_hold_does_not_cut_short_a_longer_one():
    # Two requests sent before either failed (two threads): the later, shorter hold
    # (a hold_off) must not end the wait a server's Retry-After asked for.
    holds = HoldOff()
    holds.hold("https://as.example/token", 60, OAuthError("temporarily_unavailable"))
    holds.hold("https://as.example/token", 0.01, OAuthError("temporarily_unavailable"))
    time.sleep(0.05)
    with pytest.raises(OAuthError) as info:
        holds.check("https://as.example/token")
    assert info.value.retry_after > 50
