"""Tests for mcpauth.transport: the request/response values, the URL policy and
RequestsTransport.

Policy under test: OAuth 2.1 §1.5 (https except loopback), §7.5.3 (no redirects for
credentialed requests); RFC 6749 §3.2 (token requests are form-encoded UTF-8 POSTs,
one value per parameter). The first part needs no sockets. The ``e2e`` tests talk to
loopback servers written here with the standard library (127.0.0.1, port 0), and a guard
refuses to resolve any other host name.
"""

import datetime
import http.server
import io
import ipaddress
import logging
import os
import random
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import namedtuple
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest
import requests
import requests.adapters
import requests.structures

from mcpauth.errors import (
    ConfigurationError,
    DiscoveryError,
    InsecureEndpointError,
    ProtocolError,
    TokenResponseError,
    TransportError,
)
from mcpauth.transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    HttpRequest,
    HttpResponse,
    RequestsTransport,
    Transport,
    check_url,
    is_loopback_host,
    parse_json_object,
    redact_url,
)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                   "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Refuse to resolve any host but loopback, and clear the machine's proxy settings.

    Returns the list of refused names: a test that expects no connection asserts it is
    empty, so a policy bug shows up as a failure instead of traffic.
    """
    refused = []
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host, *args, **kwargs):
        name = host.decode("ascii") if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK_NAMES:
            refused.append(name)
            raise OSError("test guard: refusing to resolve {!r}".format(name))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return refused


def _secret():
    # Characters that form encoding changes, so both spellings are searched for.
    return "s3cr3t-" + secrets.token_urlsafe(24) + "é/+= &"


def _spellings(secret):
    return [secret, quote_plus(secret), secret.split("-", 1)[1][:20]]


def _assert_hidden(text, *secrets_):
    for secret in secrets_:
        for spelling in _spellings(secret):
            assert spelling not in text, (spelling, text)


# ============================================================ HttpRequest / HttpResponse


def test_request_is_an_immutable_value():
    req = HttpRequest("GET", "https://as.example/x", (("Accept", "application/json"),))
    with pytest.raises(AttributeError):
        req.url = "https://evil.example/"  # type: ignore[misc]
    with pytest.raises(TypeError):
        req.headers[0] = ("Accept", "*/*")  # type: ignore[index]
    moved = req._replace(url="https://as.example/y")
    assert req.url == "https://as.example/x"
    assert moved.url == "https://as.example/y"
    assert req == HttpRequest("GET", "https://as.example/x", (("Accept", "application/json"),))
    assert hash(req) == hash(HttpRequest("GET", "https://as.example/x",
                                         (("Accept", "application/json"),)))
    assert (req.body, req.credentialed) == (None, False)


def test_response_is_an_immutable_value():
    resp = HttpResponse(200, (("Content-Type", "application/json"),), b"{}", "https://a/")
    with pytest.raises(AttributeError):
        resp.status = 500  # type: ignore[misc]
    assert resp == HttpResponse(200, (("Content-Type", "application/json"),), b"{}",
                                "https://a/")
    assert HttpResponse(204) == HttpResponse(204, (), b"", "")


def test_header_lookup_is_case_insensitive_and_joins_repeats():
    headers = (("WWW-Authenticate", 'Bearer realm="a"'), ("Content-Type", "text/plain"),
               ("www-authenticate", 'DPoP algs="ES256"'))
    for value in (HttpRequest("GET", "https://a/", headers), HttpResponse(401, headers)):
        assert value.header("www-authenticate") == 'Bearer realm="a", DPoP algs="ES256"'
        assert value.header("WWW-AUTHENTICATE") == value.header("Www-Authenticate")
        assert value.header("content-type") == "text/plain"
        assert value.header("Location") is None


@pytest.mark.parametrize("content_type, media_type", [
    ("application/json", "application/json"),
    ("Application/JSON; charset=UTF-8", "application/json"),
    (" application/problem+json ;q=1", "application/problem+json"),
    (None, ""),
])
def test_response_media_type(content_type, media_type):
    headers = () if content_type is None else (("Content-Type", content_type),)
    assert HttpResponse(200, headers).media_type == media_type


def test_form_parses_the_body():
    assert HttpRequest("POST", "https://a/", (), None).form() == {}
    assert HttpRequest("POST", "https://a/", (), b"").form() == {}
    req = HttpRequest("POST", "https://a/", (), b"a=1&b=&c=%C3%BC+x")
    assert req.form() == {"a": "1", "b": "", "c": "ü x"}


FORM_FIELDS = [
    ("grant_type", "client_credentials"),
    ("scope", "mcp:read mcp:write"),
    ("resource", "https://mcp.example/mcp?x=1&y=2"),
    ("client_id", "clïent&id=+/%"),
    ("empty", ""),
]


def test_post_form_follows_rfc6749_section_3_2():
    req = HttpRequest.post_form("https://as.example/token", FORM_FIELDS,
                                headers=[("Authorization", "Basic YTpi")])
    assert req.method == "POST"
    # Credentials and parameters go in the body, never in the URI (RFC 6749 §2.3.1).
    assert req.url == "https://as.example/token"
    assert req.header("content-type") == "application/x-www-form-urlencoded"
    assert req.header("accept") == "application/json"
    assert req.header("authorization") == "Basic YTpi"
    assert req.credentialed is True
    assert isinstance(req.body, bytes)
    text = req.body.decode("ascii")  # percent-encoded: pure ASCII on the wire
    parsed = parse_qs(text, keep_blank_values=True, strict_parsing=True,
                      encoding="utf-8", errors="strict")
    assert all(len(values) == 1 for values in parsed.values()), parsed
    assert {k: v[0] for k, v in parsed.items()} == dict(FORM_FIELDS)
    assert [pair.split("=", 1)[0] for pair in text.split("&")] == [k for k, _ in FORM_FIELDS]
    assert "client_id=cl%C3%AFent%26id%3D%2B%2F%25" in text  # UTF-8, then percent-encoded
    assert "scope=mcp%3Aread+mcp%3Awrite" in text
    assert req.form() == dict(FORM_FIELDS)


def test_post_form_is_a_comparable_value():
    one = HttpRequest.post_form("https://as.example/token", FORM_FIELDS)
    two = HttpRequest.post_form("https://as.example/token", list(FORM_FIELDS))
    assert one == two
    assert HttpRequest.post_form("https://a/", [], credentialed=False).credentialed is False


def test_get_json():
    req = HttpRequest.get_json("https://as.example/.well-known/x", headers=[("X-A", "1")])
    assert req == HttpRequest("GET", "https://as.example/.well-known/x",
                              (("Accept", "application/json"), ("X-A", "1")), None, False)


SENSITIVE_FORM_FIELDS = ["client_secret", "client_assertion", "assertion", "subject_token",
                         "actor_token", "access_token", "refresh_token", "code",
                         "code_verifier", "password"]


@pytest.mark.parametrize("field", SENSITIVE_FORM_FIELDS)
def test_request_repr_masks_sensitive_form_fields(field):
    secret = _secret()
    req = HttpRequest.post_form("https://as.example/token", [
        ("grant_type", "client_credentials"), ("client_id", "my-client"), (field, secret)])
    for text in (repr(req), str(req), "{}".format(req), "%r" % (req,), repr([req]),
                 repr({"r": req})):
        _assert_hidden(text, secret)
        assert "client_id=my-client" in text
        assert "grant_type=client_credentials" in text
        assert field + "=[secure]" in text


@pytest.mark.parametrize("name", ["Authorization", "authorization", "DPoP", "dpop",
                                  "Cookie", "COOKIE", "Proxy-Authorization"])
def test_request_repr_masks_sensitive_headers(name):
    secret = _secret()
    req = HttpRequest.post_form("https://as.example/token", [("grant_type", "x")],
                                headers=[(name, "Bearer " + secret), ("X-Trace", "t-1")])
    text = repr(req)
    _assert_hidden(text, secret)
    assert "[secure]" in text
    assert "t-1" in text
    assert req.header(name) == "Bearer " + secret  # the value itself is untouched


def test_request_repr_masks_everything_in_one_request():
    values = {name: _secret() for name in SENSITIVE_FORM_FIELDS}
    header_secrets = [_secret() for _ in range(3)]
    query_secret = _secret()
    req = HttpRequest.post_form(
        "https://user:{}@as.example/token?access_token={}".format("pw" + secrets.token_hex(8),
                                                                  query_secret),
        sorted(values.items()),
        headers=[("Authorization", "Basic " + header_secrets[0]),
                 ("DPoP", header_secrets[1]), ("Cookie", "sid=" + header_secrets[2])])
    text = repr(req)
    _assert_hidden(text, query_secret, *(list(values.values()) + header_secrets))
    assert "https://as.example/token" in text
    assert "user" not in text and "pw" not in text


def test_request_repr_of_other_bodies_shows_only_the_size():
    secret = _secret()
    body = '{{"client_secret": "{}"}}'.format(secret).encode("utf-8")
    for headers in ((("Content-Type", "application/json"),), ()):
        text = repr(HttpRequest("POST", "https://as.example/x", headers, body))
        _assert_hidden(text, secret)
        assert "[{} bytes]".format(len(body)) in text
    bad = b"client_secret=\xff\xfe" + secret.encode("utf-8")
    text = repr(HttpRequest("POST", "https://a/", (
        ("Content-Type", "application/x-www-form-urlencoded"),), bad))
    _assert_hidden(text, secret)


def test_response_repr_shows_neither_body_nor_headers():
    secret = _secret()
    resp = HttpResponse(200, (("Set-Cookie", "sid=" + secret),
                              ("Content-Type", "application/json")),
                        '{{"access_token": "{}"}}'.format(secret).encode("utf-8"),
                        "https://as.example/token?code=" + secret)
    for text in (repr(resp), str(resp)):
        _assert_hidden(text, secret)
        assert "200" in text and "application/json" in text
        assert "https://as.example/token" in text


# ============================================================ URL policy


@pytest.mark.parametrize("url", [
    "https://as.example/token",
    "HTTPS://AS.EXAMPLE:8443/token?x=1",
    "https://[2001:db8::1]/token",
    "http://localhost/token",
    "http://LOCALHOST:8080/",
    "http://127.0.0.1:5000/token",
    "http://127.5.5.5/",
    "http://127.255.255.254:1/",
    "http://[::1]/token",
    "http://[::1]:8080/x",
    "http://[::ffff:127.0.0.1]/x",
])
def test_check_url_accepts_https_and_loopback_http(url):
    assert check_url(url) == url


@pytest.mark.parametrize("url", [
    "http://example.com/token",
    "http://as.example:80/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::2]/",
    "http://[::ffff:10.0.0.1]/",
    "http://128.0.0.1/",
    "http://localhost.example.com/",
    "http://127.0.0.1.nip.io/",
    "http://foo.localhost/",
    "http://127.1/",
])
def test_check_url_refuses_other_plain_http(url):
    with pytest.raises(InsecureEndpointError) as info:
        check_url(url)
    assert "allow_insecure_http" in str(info.value)
    assert check_url(url, allow_insecure_http=True) == url


@pytest.mark.parametrize("url", [
    "ftp://as.example/token",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "data:text/plain,hi",
    "ws://localhost/",
    "/token",
    "token",
    "//as.example/token",
    "https:///token",
    "https://",
    "",
    None,
    42,
    b"https://as.example/",
    "https://as.example/token#frag",
    "https://as.example/token#",
    "http://localhost/#x",
    "https://as.example:notaport/",
    "https://as.example:99999/",
    "http://[::1/",
])
def test_check_url_refuses_what_is_not_an_absolute_http_url(url):
    for allow in (False, True):
        with pytest.raises(InsecureEndpointError):
            check_url(url, allow_insecure_http=allow)


def test_check_url_errors_name_the_endpoint_without_secrets():
    secret = secrets.token_hex(12)
    url = "http://user:{0}@as.example/token?client_secret={0}#{0}".format(secret)
    for allow in (False, True):
        with pytest.raises(InsecureEndpointError) as info:
            check_url(url, allow_insecure_http=allow, what="token endpoint")
        assert "token endpoint" in str(info.value)
        assert secret not in str(info.value) and secret not in repr(info.value)
        assert info.value.url == "http://as.example/token"
    with pytest.raises(InsecureEndpointError) as info:
        check_url("http://user:{}@as.example/".format(secret))
    assert secret not in str(info.value) and "as.example" in str(info.value)


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LocalHost", True), ("127.0.0.1", True), ("127.0.0.2", True),
    ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True), ("0:0:0:0:0:0:0:1", True),
    ("", False), (None, False), ("localhost.", False), ("a.localhost", False),
    ("example.com", False), ("::ffff:8.8.8.8", False), ("10.1.1.1", False),
])
def test_is_loopback_host(host, loopback):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("url, expected", [
    ("https://user:pw@as.example:8443/p/a?x=1#frag", "https://as.example:8443/p/a"),
    ("https://AS.Example/p?token=abc", "https://as.example/p"),
    ("http://[::1]:8080/x?y=1", "http://[::1]:8080/x"),
    ("http://u@[2001:db8::1]/x#y", "http://[2001:db8::1]/x"),
    ("https://as.example", "https://as.example"),
    ("/relative?q=1", "/relative"),
    ("http://[::1/", "<unparseable URL>"),
    ("https://as.example:99999/", "<unparseable URL>"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected


# ============================================================ parse_json_object


def _response(body, status=200, url="https://as.example/token?state=QUERYSECRET"):
    return HttpResponse(status, (("Content-Type", "application/json"),), body, url)


def test_parse_json_object_returns_the_object():
    body = '{"access_token": "t", "n": [1, 2], "u": "\\u00fc"}'.encode("utf-8")
    assert parse_json_object(_response(body), "token response") == {
        "access_token": "t", "n": [1, 2], "u": "ü"}


BODY_MARK = "BODYSECRET" + secrets.token_hex(8)


@pytest.mark.parametrize("body", [
    b"\xff\xfe{" + BODY_MARK.encode("ascii") + b"}",                  # invalid UTF-8
    ('{"access_token": "' + BODY_MARK + '"').encode("ascii"),         # truncated JSON
    ("<html>" + BODY_MARK + "</html>").encode("ascii"),               # not JSON
    b"",
    b"\xef\xbb\xbf{}",                                                # UTF-8 BOM
    b"[" * 100000 + BODY_MARK.encode("ascii"),                       # RecursionError path
    b'{"a":' * 100000,
], ids=["utf8", "truncated", "html", "empty", "bom", "deep-array", "deep-object"])
def test_parse_json_object_refuses_unparseable_bodies(body):
    with pytest.raises(ProtocolError) as info:
        parse_json_object(_response(body, status=502), "token response")
    exc = info.value
    assert exc.status_code == 502
    assert BODY_MARK not in str(exc) and "QUERYSECRET" not in str(exc)
    assert "token response" in str(exc)
    assert "https://as.example/token" in str(exc)
    assert len(str(exc)) < 200
    assert exc.__cause__ is None and exc.__suppress_context__


@pytest.mark.parametrize("body", [
    ('["' + BODY_MARK + '"]').encode("ascii"), b"null", b"42", b"true",
    ('"' + BODY_MARK + '"').encode("ascii"),
])
def test_parse_json_object_refuses_json_that_is_not_an_object(body):
    with pytest.raises(ProtocolError) as info:
        parse_json_object(_response(body), "metadata")
    assert "not an object" in str(info.value)
    assert BODY_MARK not in str(info.value)
    assert info.value.status_code == 200


@pytest.mark.parametrize("error_class", [ProtocolError, DiscoveryError, TokenResponseError])
def test_parse_json_object_raises_the_requested_class(error_class):
    for body in (b"nope", b"[]"):
        with pytest.raises(error_class) as info:
            parse_json_object(_response(body, status=201), "x", error_class)
        assert type(info.value) is error_class
        assert info.value.status_code == 201


def test_parse_json_object_raises_only_protocol_errors_on_garbage():
    rng = random.Random(6749)
    alphabet = b'{}[]":,0123456789.eE+-tfnrul\\ \x00\xff\xc3abc'
    for _ in range(400):
        length = rng.randint(0, 40)
        body = bytes(rng.choice(alphabet) for _ in range(length))
        try:
            value = parse_json_object(_response(body), "fuzz")
        except ProtocolError:
            continue
        assert isinstance(value, dict)


# ============================================================ RequestsTransport without sockets


class RecordingAdapter(requests.adapters.BaseAdapter):
    """A requests adapter that records what it is asked to send and answers from memory."""

    def __init__(self, status=200, headers=(("Content-Type", "application/json"),),
                 body=b"{}", error=None, stream_error=None):
        super(RecordingAdapter, self).__init__()
        self.calls = []
        self.status = status
        self.headers = headers
        self.body = body
        self.error = error
        self.stream_error = stream_error

    def send(self, request, stream=False, timeout=None, verify=True, cert=None,
             proxies=None):
        self.calls.append({"request": request, "stream": stream, "timeout": timeout,
                           "verify": verify, "cert": cert, "proxies": dict(proxies or {})})
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code = self.status
        response.headers = requests.structures.CaseInsensitiveDict(self.headers)
        response.raw = _Raw(self.body, self.stream_error)
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass


class _Raw(io.BytesIO):
    def __init__(self, body, error):
        super(_Raw, self).__init__(body)
        self.error = error

    def stream(self, amt, decode_content=True):
        if self.error is not None:
            raise self.error
        while True:
            chunk = self.read(amt)
            if not chunk:
                return
            yield chunk

    def read(self, amt=None):
        if self.error is not None:
            raise self.error
        return super(_Raw, self).read(amt)


@pytest.fixture
def session():
    s = requests.Session()
    try:
        yield s
    finally:
        s.close()


def _mounted(session, prefix="https://as.example", **kwargs):
    adapter = RecordingAdapter(**kwargs)
    session.mount(prefix, adapter)
    return adapter


def test_default_timeout_is_sent_with_every_request(session):
    adapter = _mounted(session)
    transport = RequestsTransport(session=session)
    assert transport.timeout == DEFAULT_TIMEOUT == 30.0
    assert transport.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES
    assert transport.allow_insecure_http is False
    transport(HttpRequest.get_json("https://as.example/meta"))
    transport(HttpRequest.post_form("https://as.example/token", [("grant_type", "x")]))
    assert [call["timeout"] for call in adapter.calls] == [30.0, 30.0]
    assert all(call["stream"] is True for call in adapter.calls)
    RequestsTransport(session=session, timeout=2.5)(HttpRequest.get_json(
        "https://as.example/meta"))
    assert adapter.calls[-1]["timeout"] == 2.5


@pytest.mark.parametrize("timeout", [0, -1, None])
def test_timeout_must_be_positive(timeout):
    with pytest.raises(ConfigurationError):
        RequestsTransport(timeout=timeout)


def test_transport_is_a_transport_and_makes_its_own_session():
    transport = RequestsTransport()
    try:
        assert isinstance(transport, Transport)
        assert isinstance(transport.session, requests.Session)
        assert transport.session is transport.session
    finally:
        transport.session.close()
    assert "RequestsTransport(" in repr(transport)


def test_session_tls_and_proxy_settings_are_honoured(session, monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the fake adapter")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    adapter = _mounted(session)
    session.verify = str(ca)
    session.cert = ("/client.pem", "/client.key")
    session.proxies = {"https": "http://127.0.0.1:8888"}
    RequestsTransport(session=session)(HttpRequest.get_json("https://as.example/meta"))
    call = adapter.calls[0]
    assert call["verify"] == str(ca)  # the session's, not REQUESTS_CA_BUNDLE
    assert call["cert"] == ("/client.pem", "/client.key")
    assert call["proxies"]["https"] == "http://127.0.0.1:8888"


def test_environment_settings_apply_when_the_session_has_none(session, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp-ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    adapter = _mounted(session)
    transport = RequestsTransport(session=session)
    transport(HttpRequest.get_json("https://as.example/meta"))
    assert adapter.calls[-1]["verify"] == "/etc/corp-ca.pem"
    assert adapter.calls[-1]["proxies"].get("https") == "http://127.0.0.1:3128"
    monkeypatch.setenv("NO_PROXY", "as.example")
    transport(HttpRequest.get_json("https://as.example/meta"))
    assert "https" not in adapter.calls[-1]["proxies"]
    monkeypatch.delenv("NO_PROXY")
    session.trust_env = False
    transport(HttpRequest.get_json("https://as.example/meta"))
    assert adapter.calls[-1]["verify"] is True
    assert adapter.calls[-1]["proxies"] == {}


def test_policy_is_checked_before_the_adapter_is_called(session, _loopback_only):
    adapter = _mounted(session, prefix="http://example.com")
    with pytest.raises(InsecureEndpointError):
        RequestsTransport(session=session)(HttpRequest.get_json("http://example.com/meta"))
    with pytest.raises(InsecureEndpointError):
        RequestsTransport(session=session, allow_insecure_http=True)(
            HttpRequest.get_json("ftp://example.com/meta"))
    assert adapter.calls == []
    response = RequestsTransport(session=session, allow_insecure_http=True)(
        HttpRequest.get_json("http://example.com/meta"))
    assert response.status == 200
    assert len(adapter.calls) == 1
    assert _loopback_only == []


@pytest.mark.parametrize("error, words", [
    (requests.exceptions.ConnectTimeout("c"), "timed out"),
    (requests.exceptions.ReadTimeout("r"), "timed out"),
    (requests.exceptions.SSLError("s"), "TLS error"),
    (requests.exceptions.ConnectionError("c"), "could not connect"),
    (requests.exceptions.ProxyError("p"), "could not connect"),
    (requests.exceptions.InvalidURL("u"), "failed (InvalidURL)"),
])
def test_requests_errors_become_retryable_transport_errors(session, error, words):
    _mounted(session, error=error)
    request = HttpRequest.post_form("https://as.example/token?trace=QUERYSECRET",
                                    [("client_secret", "FORMSECRET")])
    with pytest.raises(TransportError) as info:
        RequestsTransport(session=session)(request)
    assert words in str(info.value)
    assert info.value.retryable is True
    assert info.value.__cause__ is error
    assert "POST https://as.example/token" in str(info.value)
    assert "QUERYSECRET" not in str(info.value) and "FORMSECRET" not in str(info.value)


def test_an_error_while_reading_the_body_is_a_transport_error(session):
    import urllib3.exceptions

    _mounted(session, stream_error=urllib3.exceptions.ProtocolError("connection broken"))
    with pytest.raises(TransportError) as info:
        RequestsTransport(session=session)(HttpRequest.get_json("https://as.example/m"))
    assert "while reading" in str(info.value)
    assert info.value.retryable is True


def test_size_cap_without_sockets(session):
    _mounted(session, body=b"x" * 101)
    transport = RequestsTransport(session=session, max_response_bytes=100)
    with pytest.raises(ProtocolError) as info:
        transport(HttpRequest.get_json("https://as.example/m"))
    assert type(info.value) is ProtocolError and info.value.status_code == 200
    _mounted(session, body=b"x" * 100)
    assert transport(HttpRequest.get_json("https://as.example/m")).body == b"x" * 100


# ============================================================ loopback servers (real sockets)


Seen = namedtuple("Seen", "method path headers body")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.append(Seen(self.command, self.path,
                                         list(self.headers.items()), body))
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            reply(self, 404, body=b'{"error": "not_found"}')
        else:
            route(self)

    do_GET = do_POST = do_PUT = _serve


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup; skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def handle_error(self, request, client_address):
        self.errors.append(sys.exc_info()[1])


class LoopbackServer(object):
    """An HTTP(S) server on 127.0.0.1 that records requests and answers from routes."""

    def __init__(self, ssl_context=None):
        self.httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}
        self.httpd.received = []
        self.httpd.errors = []
        self.httpd.release = threading.Event()
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if ssl_context is not None else "http"
        self.base = "{}://127.0.0.1:{}".format(scheme, self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02})
        self.thread.daemon = True
        self.thread.start()

    @property
    def received(self):
        return self.httpd.received

    @property
    def release(self):
        return self.httpd.release

    def url(self, path):
        return self.base + path

    def route(self, path, handler):
        self.httpd.routes[path] = handler

    def close(self):
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        unexpected = [e for e in self.httpd.errors if not isinstance(e, OSError)]
        assert unexpected == [], unexpected


def reply(handler, status, headers=(), body=b"", content_length=True):
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    if content_length:
        handler.send_header("Content-Length", str(len(body)))
    else:
        handler.send_header("Connection", "close")
        handler.close_connection = True
    handler.end_headers()
    handler.wfile.write(body)


def reply_chunked(handler, status, chunks, headers=()):
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for chunk in chunks:
        handler.wfile.write(("%x\r\n" % len(chunk)).encode("ascii") + chunk + b"\r\n")
    handler.wfile.write(b"0\r\n\r\n")


def json_route(status=200, body=b'{"ok": true}', headers=()):
    def route(handler):
        reply(handler, status, (("Content-Type", "application/json"),) + tuple(headers),
              body)
    return route


def redirect_route(status, location):
    def route(handler):
        reply(handler, status, (("Location", location),), b"")
    return route


@pytest.fixture
def server():
    s = LoopbackServer()
    try:
        yield s
    finally:
        s.close()


server2 = server


@pytest.fixture
def transport(session):
    return RequestsTransport(session=session, timeout=5)


def _closed_port():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


e2e = pytest.mark.e2e


@e2e
def test_response_status_headers_and_body_are_returned(server, transport):
    body = b'{"resource": "https://mcp.example/mcp"}'

    def route(handler):
        handler.send_response(201)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("X-Custom", "one")
        handler.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        handler.send_header("WWW-Authenticate", 'DPoP algs="ES256"')
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.route("/meta", route)
    response = transport(HttpRequest.get_json(server.url("/meta")))
    assert isinstance(response, HttpResponse)
    assert response.status == 201
    assert response.body == body
    assert response.url == server.url("/meta")
    assert response.media_type == "application/json"
    assert response.header("x-custom") == "one"
    challenges = response.header("www-authenticate")
    assert 'Bearer error="invalid_token"' in challenges and 'DPoP algs="ES256"' in challenges
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in response.headers)
    assert parse_json_object(response, "metadata") == {"resource": "https://mcp.example/mcp"}


@e2e
def test_request_arrives_as_built(server, transport):
    server.route("/token", json_route())
    request = HttpRequest.post_form(server.url("/token"), FORM_FIELDS,
                                    headers=[("Authorization", "Basic YTpi")])
    assert transport(request).status == 200
    (seen,) = server.received
    assert seen.method == "POST"
    assert seen.path == "/token"
    assert seen.body == request.body
    headers = {k.lower(): v for k, v in seen.headers}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["authorization"] == "Basic YTpi"
    assert headers["accept"] == "application/json"
    assert headers["content-length"] == str(len(request.body))


@e2e
def test_timeout_gives_a_retryable_transport_error(server, session):
    def slow(handler):
        handler.server.release.wait(5)
        try:
            reply(handler, 200, body=b"{}")
        except OSError:
            pass

    server.route("/slow", slow)
    start = time.monotonic()
    with pytest.raises(TransportError) as info:
        RequestsTransport(session=session, timeout=0.2)(HttpRequest.get_json(
            server.url("/slow?x=QUERYSECRET")))
    assert time.monotonic() - start < 3
    assert "timed out after 0.2 s" in str(info.value)
    assert "QUERYSECRET" not in str(info.value)
    assert info.value.retryable is True
    # The socket's read timeout and the call's deadline are both 0.2 s here: whichever
    # fires first says so (the deadline has no underlying exception).
    cause = info.value.__cause__
    assert cause is None or isinstance(cause, requests.exceptions.Timeout), cause


@e2e
def test_connection_refused_gives_a_transport_error(transport):
    url = "http://127.0.0.1:{}/token".format(_closed_port())
    with pytest.raises(TransportError) as info:
        transport(HttpRequest.post_form(url, [("client_secret", "FORMSECRET")]))
    assert "could not connect" in str(info.value)
    assert info.value.retryable is True
    assert "FORMSECRET" not in str(info.value)


@e2e
def test_body_truncated_mid_chunk_gives_a_transport_error(server, transport):
    def broken(handler):
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.write(b"10\r\n0123456789")  # promises 16 bytes, sends 10, hangs up
        handler.close_connection = True

    server.route("/broken", broken)
    with pytest.raises(TransportError) as info:
        transport(HttpRequest.get_json(server.url("/broken")))
    assert info.value.retryable is True


LIMIT = 1000


def _size_routes(server, size):
    body = b"x" * size
    server.route("/length", lambda h: reply(h, 200, body=body))
    server.route("/eof", lambda h: reply(h, 200, body=body, content_length=False))
    server.route("/chunked", lambda h: reply_chunked(
        h, 200, [body[i:i + 300] for i in range(0, len(body), 300)]))


@e2e
@pytest.mark.parametrize("path", ["/length", "/eof", "/chunked"])
def test_body_over_the_cap_is_a_protocol_error(server, session, path):
    _size_routes(server, 5 * LIMIT)
    transport = RequestsTransport(session=session, timeout=5, max_response_bytes=LIMIT)
    with pytest.raises(ProtocolError) as info:
        transport(HttpRequest.get_json(server.url(path + "?q=QUERYSECRET")))
    assert type(info.value) is ProtocolError
    assert info.value.status_code == 200
    assert "QUERYSECRET" not in str(info.value) and "xxxx" not in str(info.value)
    assert str(LIMIT) in str(info.value)
    if path == "/length":
        assert "{} bytes".format(5 * LIMIT) in str(info.value)


@e2e
@pytest.mark.parametrize("path", ["/length", "/eof", "/chunked"])
def test_body_at_the_cap_is_accepted(server, session, path):
    _size_routes(server, LIMIT)
    transport = RequestsTransport(session=session, timeout=5, max_response_bytes=LIMIT)
    assert transport(HttpRequest.get_json(server.url(path))).body == b"x" * LIMIT


@e2e
def test_cap_applies_to_a_redirect_body_too(server, session):
    """A 307 with an endless body: the cap must stop reading, not requests' redirect code.

    requests' Session.send() reads the whole body of any response with a Location header
    even with allow_redirects=False; the server here notices whether the client hung up.
    """
    done = threading.Event()
    outcome = []

    def endless(handler):
        handler.send_response(307)
        handler.send_header("Location", "/elsewhere")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.close_connection = True
        frame = ("%x\r\n" % 65536).encode("ascii") + b"x" * 65536 + b"\r\n"
        try:
            for _ in range(1024):  # 64 MiB, far more than the socket buffers hold
                handler.wfile.write(frame)
            handler.wfile.write(b"0\r\n\r\n")
            outcome.append("client read everything")
        except OSError:
            outcome.append("client hung up")
        finally:
            done.set()

    server.route("/token", endless)
    transport = RequestsTransport(session=session, timeout=5, max_response_bytes=LIMIT)
    with pytest.raises(ProtocolError):
        transport(HttpRequest.post_form(server.url("/token"), [("client_secret", "s")]))
    assert done.wait(10)
    assert outcome == ["client hung up"]


@e2e
def test_credentialed_post_is_not_redirected(server, server2, transport):
    secret = _secret()
    server.route("/token", redirect_route(307, server2.url("/token")))
    server2.route("/token", json_route())
    request = HttpRequest.post_form(server.url("/token"), [
        ("grant_type", "client_credentials"), ("client_secret", secret)],
        headers=[("Authorization", "Basic " + secrets.token_hex(8))])
    response = transport(request)
    assert response.status == 307
    assert response.header("Location") == server2.url("/token")
    assert response.url == server.url("/token")
    assert len(server.received) == 1
    assert server2.received == []


@e2e
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_credentialed_get_is_not_redirected(server, server2, transport, status):
    server.route("/mcp", redirect_route(status, server2.url("/mcp")))
    request = HttpRequest("GET", server.url("/mcp"), (("Authorization", "Bearer t"),),
                          None, credentialed=True)
    assert transport(request).status == status
    assert server2.received == []


@e2e
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_plain_get_follows_a_same_origin_redirect(server, transport, status):
    server.route("/.well-known/oauth-authorization-server",
                 redirect_route(status, server.url("/meta")))
    server.route("/meta", json_route(body=b'{"issuer": "x"}'))
    response = transport(HttpRequest.get_json(
        server.url("/.well-known/oauth-authorization-server")))
    assert response.status == 200
    assert response.body == b'{"issuer": "x"}'
    assert response.url == server.url("/meta")
    assert [s.path for s in server.received] == ["/.well-known/oauth-authorization-server",
                                                 "/meta"]
    assert [s.method for s in server.received] == ["GET", "GET"]
    assert ("Accept", "application/json") in server.received[1].headers


@e2e
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_plain_get_does_not_follow_a_redirect_to_another_origin(server, server2, transport,
                                                                 status):
    """C: another port, host or scheme is another origin; the 3xx comes back as it is."""
    server.route("/.well-known/oauth-authorization-server",
                 redirect_route(status, server2.url("/admin/delete?all=1")))
    server2.route("/admin/delete", json_route())
    response = transport(HttpRequest.get_json(
        server.url("/.well-known/oauth-authorization-server")))
    assert response.status == status
    assert response.header("Location") == server2.url("/admin/delete?all=1")
    assert response.url == server.url("/.well-known/oauth-authorization-server")
    assert len(server.received) == 1
    assert server2.received == []


@e2e
@pytest.mark.parametrize("target", ["http://localhost:{port}/meta", "https://127.0.0.1:{port}/meta",
                                    "http://127.0.0.2:{port}/meta", "//localhost:{port}/meta"])
def test_same_port_other_host_or_scheme_is_another_origin(server, transport, target):
    port = server.base.rsplit(":", 1)[1]
    server.route("/start", redirect_route(302, target.format(port=port)))
    server.route("/meta", json_route())
    assert transport(HttpRequest.get_json(server.url("/start"))).status == 302
    assert [s.path for s in server.received] == ["/start"]


@e2e
def test_redirect_origin_ignores_default_port_and_case(server, transport):
    base = server.base.replace("http://127.0.0.1", "HTTP://127.0.0.1")
    server.route("/start", redirect_route(302, base + "/meta"))
    server.route("/meta", json_route())
    assert transport(HttpRequest.get_json(server.url("/start"))).status == 200
    assert [s.path for s in server.received] == ["/start", "/meta"]


@e2e
def test_relative_redirect_is_resolved(server, transport):
    server.route("/a/start", redirect_route(302, "../b/meta"))
    server.route("/b/meta", json_route())
    response = transport(HttpRequest.get_json(server.url("/a/start")))
    assert response.status == 200
    assert response.url == server.url("/b/meta")


@e2e
@pytest.mark.parametrize("status", [300, 304])
def test_other_3xx_with_location_is_returned(server, transport, status):
    server.route("/meta", redirect_route(status, "/other"))
    response = transport(HttpRequest.get_json(server.url("/meta")))
    assert response.status == status
    assert [s.path for s in server.received] == ["/meta"]


def _loop_route(handler):
    n = int(parse_qs(urlsplit(handler.path).query).get("n", ["0"])[0])
    reply(handler, 302, (("Location", "/loop?n={}".format(n + 1)),), b"")


@e2e
@pytest.mark.parametrize("max_redirects, expected", [(None, 5), (2, 2), (0, 0)])
def test_redirects_are_capped(server, session, max_redirects, expected):
    server.route("/loop", _loop_route)
    kwargs = {} if max_redirects is None else {"max_redirects": max_redirects}
    transport = RequestsTransport(session=session, timeout=5, **kwargs)
    response = transport(HttpRequest.get_json(server.url("/loop?n=0")))
    assert response.status == 302
    assert [s.path for s in server.received] == [
        "/loop?n={}".format(n) for n in range(expected + 1)]
    assert response.url == server.url("/loop?n={}".format(expected))


@e2e
@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("target", [
    "http://example.com/meta", "https://example.com/meta", "http://10.0.0.1/meta",
    "http://169.254.169.254/latest/meta-data/", "ftp://127.0.0.1/meta", "https://*.x/m"])
def test_redirect_to_another_origin_is_returned_without_connecting(
        server, target, insecure, _loopback_only):
    server.route("/meta", redirect_route(302, target))
    transport = RequestsTransport(timeout=5, allow_insecure_http=insecure)
    response = transport(HttpRequest.get_json(server.url("/meta")))
    assert response.status == 302 and response.header("Location") == target
    assert _loopback_only == []                      # no other host was even resolved
    assert len(server.received) == 1


@pytest.mark.parametrize("url", [
    "https://.evil.example/prm", "https://evil..example/token", "https://a\u3002\u3002b/prm",
    "https://\uff0ea/x", "https://./x", "https://../x", "https://ev il.example/",
    "https://evil\x7f.example/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_host_with_an_empty_label_is_an_insecure_endpoint_error(url, method, _loopback_only):
    """D: requests 2.20 sends these to the resolver; newer ones raise an unwrapped
    InvalidURL (or urllib3's LocationParseError). check_url() refuses them first."""
    with pytest.raises(InsecureEndpointError) as info:
        check_url(url)
    assert "not a valid URL" in str(info.value)
    if method == "GET":
        request = HttpRequest.get_json(url)
    else:
        request = HttpRequest.post_form(url, [("client_secret", "FORMSECRET")])
    with pytest.raises(InsecureEndpointError) as info:
        RequestsTransport(timeout=5)(request)
    assert "FORMSECRET" not in str(info.value) + repr(info.value)
    assert _loopback_only == []


@pytest.mark.parametrize("url", ["https://as.example./token", "https://[::1]:8443/x",
                                 "http://127.0.0.1./x", "https://xn--bcher-kva.example/",
                                 "https://a\uff0e/x"])
def test_host_names_that_stay_valid(url):
    assert check_url(url, allow_insecure_http=True) == url


@pytest.mark.parametrize("url", ["https://*.evil.example/prm", "https://\u00e9vil*.example/",
                                 "https://\u2603*.x/"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_url_that_requests_cannot_parse_is_an_insecure_endpoint_error(url, method,
                                                                      _loopback_only):
    """D: check_url() accepts these (urlsplit parses them); requests' IDNA step does not,
    and its InvalidURL used to escape unwrapped."""
    if method == "GET":
        request = HttpRequest.get_json(url)
    else:
        request = HttpRequest.post_form(url, [("client_secret", "FORMSECRET")])
    check_url(url)
    with pytest.raises(InsecureEndpointError) as info:
        RequestsTransport(timeout=5)(request)
    assert "not a valid URL" in str(info.value)
    assert "FORMSECRET" not in str(info.value) + repr(info.value)
    assert not isinstance(info.value.__context__, InsecureEndpointError)
    assert _loopback_only == []


@e2e
def test_same_origin_redirect_to_a_refused_url_raises_before_connecting(server, transport):
    server.route("/meta", redirect_route(302, "/other#fragment"))
    with pytest.raises(InsecureEndpointError):
        transport(HttpRequest.get_json(server.url("/meta")))
    assert len(server.received) == 1


@e2e
def test_session_headers_cookies_auth_and_hooks_do_not_bleed(server, session, transport,
                                                              monkeypatch, tmp_path):
    """The TypeScript SDK's "header bleed": a session's settings reach the AS."""
    called = []

    def session_auth(r):
        called.append("auth")
        r.headers["X-Bleed-Auth"] = "auth"
        return r

    def hook(r, *args, **kwargs):
        called.append("hook")
        return r

    session.auth = session_auth
    session.headers["X-Bleed"] = "header"
    session.cookies.set("bleed", "cookie")
    session.params = {"bleed": "param"}
    session.hooks["response"].append(hook)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-pass\n")
    os.chmod(str(netrc), 0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    server.route("/token", json_route(headers=[("Set-Cookie", "as-session=abc; Path=/")]))
    server.route("/meta", json_route())

    transport(HttpRequest.post_form(server.url("/token"), [("grant_type", "x")]))
    transport(HttpRequest.get_json(server.url("/meta")))
    transport(HttpRequest.get_json(server.url("/meta").replace(
        "http://", "http://url-user:url-pass@")))

    assert len(server.received) == 3
    for seen in server.received:
        names = {k.lower() for k, _ in seen.headers}
        assert not names & {"x-bleed", "x-bleed-auth", "cookie", "authorization"}, names
        assert "bleed" not in seen.path
    assert called == []
    # Nor does the AS's cookie land in the caller's session.
    assert "as-session" not in session.cookies


@e2e
def test_session_proxies_are_honoured(server, session, transport):
    proxy = LoopbackServer()
    try:
        proxy.route("/meta", json_route(body=b'{"via": "proxy"}'))
        session.proxies = {"http": proxy.base}
        response = transport(HttpRequest.get_json(server.url("/meta")))
        assert response.body == b'{"via": "proxy"}'
        assert [s.path for s in proxy.received] == [server.url("/meta")]  # absolute-form
        assert server.received == []
    finally:
        proxy.close()


@e2e
def test_environment_proxies_and_no_proxy_with_loopback(server, session, transport,
                                                        monkeypatch):
    server.route("/meta", json_route())
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:{}".format(_closed_port()))
    with pytest.raises(TransportError):  # trust_env: the (dead) proxy is used
        transport(HttpRequest.get_json(server.url("/meta")))
    assert server.received == []
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    assert transport(HttpRequest.get_json(server.url("/meta"))).status == 200
    monkeypatch.delenv("no_proxy")
    session.trust_env = False
    assert transport(HttpRequest.get_json(server.url("/meta"))).status == 200
    assert len(server.received) == 2


@e2e
def test_debug_log_has_method_and_url_but_no_secrets(server, transport, caplog):
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    client_secret, basic, query = _secret(), secrets.token_hex(16), secrets.token_hex(16)
    server.route("/token", json_route(body=b'{"access_token": "RESPONSETOKEN"}'))
    server.route("/start", redirect_route(302, "/meta?cursor=" + query))
    server.route("/meta", json_route())
    transport(HttpRequest.post_form(server.url("/token?trace=" + query), [
        ("grant_type", "client_credentials"), ("client_secret", client_secret)],
        headers=[("Authorization", "Basic " + basic)]))
    transport(HttpRequest.get_json(server.url("/start?state=" + query)))
    records = [r for r in caplog.records if r.name.startswith("mcpauth")]
    text = "\n".join(r.getMessage() for r in records)
    assert "POST {} -> 200".format(server.url("/token")) in text
    assert "GET {} -> 302".format(server.url("/start")) in text
    assert "{} -> {}".format(server.url("/start"), server.url("/meta")) in text
    _assert_hidden(text, client_secret)
    for secret in (basic, query, "RESPONSETOKEN", "client_credentials", "grant_type"):
        assert secret not in text
    assert all(r.levelno == logging.DEBUG for r in records)


# ============================================================ TLS (real sockets)


def _tls_files(directory):
    """A CA and a 127.0.0.1 server certificate signed by it (PEM paths)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    backend = default_backend()
    now = datetime.datetime.now(datetime.timezone.utc)

    def usage(**on):
        flags = dict.fromkeys(["digital_signature", "content_commitment", "key_encipherment",
                               "data_encipherment", "key_agreement", "key_cert_sign",
                               "crl_sign", "encipher_only", "decipher_only"], False)
        flags.update(on)
        return x509.KeyUsage(**flags)

    def build(subject, issuer, public_key, signing_key, extensions):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1)))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signing_key, hashes.SHA256(), backend)

    ca_key = ec.generate_private_key(ec.SECP256R1(), backend)
    ca = build("mcpauth test CA", "mcpauth test CA", ca_key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (usage(key_cert_sign=True, crl_sign=True), True),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    ])
    key = ec.generate_private_key(ec.SECP256R1(), backend)
    leaf = build("127.0.0.1", "mcpauth test CA", key.public_key(), ca_key, [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
         False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ])
    paths = {name: str(directory / (name + ".pem")) for name in ("ca", "cert", "key")}
    with open(paths["ca"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert"], "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(paths["key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_server(tmp_path):
    paths = _tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(paths["cert"], paths["key"])
    s = LoopbackServer(ssl_context=context)
    s.route("/meta", json_route())
    try:
        yield s, paths
    finally:
        s.close()


@e2e
@pytest.mark.crypto
def test_tls_certificates_are_verified_by_default(tls_server, transport, monkeypatch):
    server, _ = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(TransportError) as info:
        transport(HttpRequest.get_json(server.url("/meta")))
    assert "TLS error" in str(info.value)
    assert info.value.retryable is True


@e2e
@pytest.mark.crypto
def test_session_verify_is_honoured(tls_server, session, transport, monkeypatch):
    server, paths = tls_server
    session.verify = paths["ca"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    response = transport(HttpRequest.get_json(server.url("/meta")))
    assert response.status == 200
    assert response.body == b'{"ok": true}'


# -- loads_json: bounded nesting before json.loads --------------------------------------------

def test_loads_json_accepts_nesting_up_to_the_limit():
    from mcpauth.transport import MAX_JSON_DEPTH, loads_json

    assert loads_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    deep = '{"a":' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH
    assert loads_json(deep) is not None


@pytest.mark.parametrize("text", [
    "[" * 201 + "]" * 201,
    '{"a":' * 201 + "1" + "}" * 201,
    "[" * 100000 + "]" * 100000,          # would recurse in the C scanner (3.6 aborts)
    "[" * 100000,                         # unterminated, still refused for depth
])
def test_loads_json_refuses_deeper_nesting_with_a_value_error(text):
    from mcpauth.transport import loads_json

    with pytest.raises(ValueError) as info:
        loads_json(text)
    assert "nested" in str(info.value)


def test_loads_json_ignores_brackets_inside_strings():
    from mcpauth.transport import loads_json

    assert loads_json('["' + "[" * 5000 + '"]') == ["[" * 5000]
    assert loads_json('["\\"[[[", {"k": "]]]{"}]') == ['"[[[', {"k": "]]]{"}]
