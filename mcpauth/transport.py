"""The I/O seam: immutable HTTP request/response values and one requests-backed sender.

Everything above this module builds :class:`HttpRequest` values and parses
:class:`HttpResponse` values, so it can be tested without sockets (google-auth's
``transport.Request`` idea; h11's "no networking code" core).

Policy enforced here for every request mcpauth itself sends (discovery, token
requests; not the caller's own MCP requests):

* https only, except loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``), as the
  TypeScript SDK allows, or an explicit ``allow_insecure_http=True``
  (OAuth 2.1 §1.5; MCP security considerations "Communication Security").
* A deadline on every call (requests has none by default): ``timeout`` bounds the whole
  exchange, redirects included, not only each wait for a byte.
* A cap on the size of every response body, after decompression (gzip and deflate are
  inflated here in small steps).
* Requests that carry credentials are never redirected (OAuth 2.1 §7.5.3). Plain
  metadata GETs follow at most a few redirects, and only within the origin (scheme,
  host, port) of the URL they were sent to: a redirect to another origin is returned
  as it is, not followed. The first URL of a metadata GET has passed the SSRF guard of
  :func:`mcpauth.discovery.validate_resource_metadata_url` (RFC 9728 §7.7), which looks
  at the host; a redirect from a host that passed it to ``127.0.0.1`` or
  ``169.254.169.254`` would get around it, and staying on one origin keeps every hop on
  the host that was checked. RFC 9728 and RFC 8414 do not ask clients to follow
  redirects at all. Each hop is also checked by the https policy.
* A URL whose host has an empty label (``https://a..b/``), or that ``requests`` or
  urllib3 cannot parse (``https://*.example/``), raises
  :class:`~mcpauth.errors.InsecureEndpointError` like any other unusable URL, before
  any name is resolved.
* None of the caller's session headers, cookies or ``session.auth`` are merged into
  these requests; the session's TLS (``verify``, ``cert``) and proxy settings are.
"""

import abc
import functools
import ipaddress
import itertools
import json
import logging
import re
import socket
import threading
import time
import zlib
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Type
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from . import _fork
from ._compat import lazy_pattern
from .errors import (
    ConfigurationError,
    InsecureEndpointError,
    ProtocolError,
    TransportError,
    clean_text,
)

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "Transport",
    "RequestsTransport",
    "check_url",
    "is_loopback_host",
    "redact_url",
    "parse_json_object",
    "loads_json",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT_DIGITS",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RESPONSE_BYTES",
]

logger = logging.getLogger("mcpauth")

#: Seconds before any single request mcpauth sends is abandoned (PyJWT uses 30 s).
DEFAULT_TIMEOUT = 30.0
#: Largest response body read from a metadata or token endpoint (1 MiB).
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
#: Same-origin redirects followed for metadata GETs; credentialed requests follow none.
DEFAULT_MAX_REDIRECTS = 5
# The statuses that redirect (RFC 9110 §15.4; the same set requests follows). A 300 or
# 304 carrying a Location is returned as it is.
_REDIRECT_STATUSES = frozenset([301, 302, 303, 307, 308])

# Separators of host name labels: "." and the full stops IDNA maps to it (RFC 3490 §3.1).
_LABEL_SEPARATORS = lazy_pattern("[.\u3002\uff0e\uff61]")

# Header and form fields whose values never appear in a repr (RFC 6749, 7523, 8693).
SENSITIVE_HEADERS = frozenset(["authorization", "proxy-authorization", "cookie", "dpop"])
SENSITIVE_FORM_FIELDS = frozenset([
    "client_secret", "client_assertion", "assertion", "subject_token", "actor_token",
    "access_token", "refresh_token", "code", "code_verifier", "password",
])

Headers = Tuple[Tuple[str, str], ...]


def _header(headers: Headers, name: str) -> Optional[str]:
    lname = name.lower()
    values = [v for k, v in headers if k.lower() == lname]
    if not values:
        return None
    return ", ".join(values)


class HttpRequest(NamedTuple):
    """An HTTP request to send, as an immutable value.

    ``credentialed`` marks requests whose headers or body carry a credential; the
    transport never follows a redirect for them.
    """

    method: str
    url: str
    headers: Headers = ()
    body: Optional[bytes] = None
    credentialed: bool = False

    def header(self, name: str) -> Optional[str]:
        """The value of header ``name`` (case-insensitive), repeated values joined."""
        return _header(self.headers, name)

    def form(self) -> Dict[str, str]:
        """The form-urlencoded body as a dict (for tests and logging decisions)."""
        if not self.body:
            return {}
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def __repr__(self) -> str:
        headers = tuple(
            (k, "[secure]" if k.lower() in SENSITIVE_HEADERS else v) for k, v in self.headers
        )
        body: Optional[str] = None
        if self.body is not None:
            ctype = (self.header("Content-Type") or "").lower()
            if ctype.startswith("application/x-www-form-urlencoded"):
                try:
                    pairs = parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)
                    body = urlencode([
                        (k, "[secure]" if k in SENSITIVE_FORM_FIELDS else v) for k, v in pairs
                    ], safe="[]")
                except (UnicodeDecodeError, ValueError):
                    body = "[{} bytes]".format(len(self.body))
            else:
                body = "[{} bytes]".format(len(self.body))
        return ("HttpRequest(method={!r}, url={!r}, headers={!r}, body={!r}, "
                "credentialed={!r})").format(
            self.method, redact_url(self.url), headers, body, self.credentialed)

    @classmethod
    def post_form(cls, url: str, fields: Sequence[Tuple[str, str]],
                  headers: Sequence[Tuple[str, str]] = (),
                  credentialed: bool = True) -> "HttpRequest":
        """A ``POST`` with an ``application/x-www-form-urlencoded`` UTF-8 body (RFC 6749 §3.2)."""
        body = urlencode(list(fields)).encode("ascii")
        all_headers = (
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
        ) + tuple(headers)
        return cls("POST", url, all_headers, body, credentialed)

    @classmethod
    def get_json(cls, url: str, headers: Sequence[Tuple[str, str]] = ()) -> "HttpRequest":
        """A plain metadata ``GET`` asking for JSON."""
        return cls("GET", url, (("Accept", "application/json"),) + tuple(headers), None, False)


class HttpResponse(NamedTuple):
    """A received HTTP response, as an immutable value (body fully read, size-capped)."""

    status: int
    headers: Headers = ()
    body: bytes = b""
    url: str = ""

    def header(self, name: str) -> Optional[str]:
        """The value of header ``name`` (case-insensitive), repeated values joined."""
        return _header(self.headers, name)

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lowercased ("" when absent)."""
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()

    def __repr__(self) -> str:
        return "HttpResponse(status={!r}, url={!r}, media_type={!r}, body=[{} bytes])".format(
            self.status, redact_url(self.url), self.media_type, len(self.body))


def _origin(url: str) -> Optional[Tuple[str, str, Optional[int]]]:
    """(scheme, host, port) of ``url`` with the default port filled in, or None."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port
    except ValueError:
        return None
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    host = parts.hostname
    if not host:
        return None
    return scheme, host, port


def redact_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: safe for messages and logs.

    Control, format and line-separator characters (a peer's URL may hold U+2028 or
    NEL) become spaces, as in :func:`~mcpauth.errors.clean_peer_text`.
    """
    if not isinstance(url, str):
        return "<unparseable URL>"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = "[" + host + "]"
        if parts.port is not None:
            host += ":{}".format(parts.port)
        return clean_text(urlunsplit((parts.scheme, host, parts.path, "", "")))
    except ValueError:
        return "<unparseable URL>"


def is_loopback_host(host: Optional[str]) -> bool:
    """True for ``localhost``, any ``127.0.0.0/8`` address and ``::1``.

    Names under ``.localhost`` are not accepted: a resolver may send them to DNS. An
    IPv4-mapped IPv6 address counts as its IPv4 address on every Python version
    (``is_loopback`` only says so from 3.13).
    """
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def check_ip_literal(parts: Any) -> None:
    """Raise ValueError unless the bracketed host of ``parts`` (a SplitResult), if any,
    is an IPv6 address, with an optional RFC 6874 zone (RFC 3986 §3.2.2).

    urlsplit() checks an IP-literal only from Python 3.11.4 (and allows ``[v1.x]``).
    """
    if "[" in parts.netloc:
        ipaddress.IPv6Address((parts.hostname or "").split("%", 1)[0])


def identical_resource(resource: Optional[str], server_url: str) -> bool:
    """Whether ``resource`` is identical to ``server_url`` without its fragment (which is
    never sent): RFC 9728 §3.3's comparison of code points, with no case folding,
    default-port or trailing-slash normalisation."""
    return resource == server_url.split("#", 1)[0]


def check_url(url: Any, allow_insecure_http: bool = False, what: str = "endpoint") -> str:
    """Validate that mcpauth may send a request to ``url``; return it unchanged.

    Raises:
        InsecureEndpointError: not https, and not http on a loopback host (unless
            ``allow_insecure_http``); or not an absolute http(s) URL at all, including a
            host name with an empty label (``https://a..b/``, ``https://.a/``) or a
            space or control character in it.
    """
    if not isinstance(url, str) or not url:
        raise InsecureEndpointError("{} URL is missing or not a string".format(what))
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
        check_ip_literal(parts)  # ValueError for "[zz]", "[1.2.3.4]", "[v1.x]"
    except ValueError:
        raise InsecureEndpointError("{} URL is not a valid URL".format(what)) from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        raise InsecureEndpointError(
            "{} URL must be an absolute https URL, got {}".format(what, redact_url(url)),
            url=redact_url(url))
    if "#" in url:  # RFC 6749 §3.1, §3.2: no fragment component, even an empty one
        raise InsecureEndpointError(
            "{} URL must not have a fragment: {}".format(what, redact_url(url)),
            url=redact_url(url))
    if ":" not in host:  # a name or IPv4 address, not an IPv6 literal
        # RFC 1035 §2.3.1 / RFC 5890: no empty label (".a", "a..b"); one trailing dot is
        # the root. IDNA also splits at the ideographic and fullwidth full stops.
        labels = _LABEL_SEPARATORS.split(host)
        if labels[-1] == "":
            labels.pop()
        if not labels or not all(labels) or any(c <= " " or c == "\x7f" for c in host):
            raise InsecureEndpointError(
                "{} URL {} is not a valid URL (empty host name label, or a space or "
                "control character in the host)".format(what, redact_url(url)),
                url=redact_url(url))
    if scheme == "http" and not allow_insecure_http and not is_loopback_host(host):
        raise InsecureEndpointError(
            "refusing plain http for {} {}: https is required except on loopback hosts "
            "(pass allow_insecure_http=True to override)".format(what, redact_url(url)),
            url=redact_url(url))
    return url


#: Deepest JSON nesting mcpauth decodes from a peer. Metadata, token responses, JWS
#: parts and MCP messages are shallow; deeper input is refused before json.loads, whose
#: C scanner recurses per level (on Python 3.6 a RecursionError raised deep inside it can
#: end in "Fatal Python error: Cannot recover from stack overflow" and abort).
MAX_JSON_DEPTH = 200
#: Most digits in a JSON integer mcpauth decodes from a peer (Python 3.11's default
#: ``int`` limit; earlier versions have none, and converting a million digits is
#: quadratic there).
MAX_JSON_INT_DIGITS = 4300

# A JSON string: to its closing quote or, unterminated, to the end of the text (the
# optional closing quote). Each character is looked at a bounded number of times whatever
# the input, so removing strings is linear (a pattern that fails on an unterminated string
# would be retried from each later quote: quadratic).
_JSON_STRING = lazy_pattern(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_DIGITS = lazy_pattern(r"\A[0-9]+\Z")
_NOT_BRACKETS = lazy_pattern(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of ``text`` outside strings, in linear time.

    Every step runs in C (regex substitution, then a running sum of +1/-1): a Python
    loop per bracket would take seconds for a megabyte of ``[]``.
    """
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _json_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise ValueError("JSON integer longer than {} digits".format(MAX_JSON_INT_DIGITS))
    return int(digits)


def loads_json(text: str) -> Any:
    """``json.loads`` for peer-supplied text, in time linear in its length.

    Refuses nesting deeper than MAX_JSON_DEPTH and integers longer than
    MAX_JSON_INT_DIGITS digits.

    Raises:
        ValueError: not JSON, nested too deeply, an integer too long, or ``text`` not a
            str (json.JSONDecodeError is a ValueError).
    """
    if not isinstance(text, str):
        raise ValueError("JSON text must be str, not {}".format(type(text).__name__))
    # Only text with that many brackets can be too deep; strings are skipped.
    if (text.count("[") + text.count("{") > MAX_JSON_DEPTH
            and _json_depth(text) > MAX_JSON_DEPTH):
        raise ValueError("JSON nested deeper than {} levels".format(MAX_JSON_DEPTH))
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError:  # a caller already deep in its own stack
        raise ValueError("JSON nested too deeply") from None


def parse_json_object(response: HttpResponse, what: str,
                      error_class: Type[ProtocolError] = ProtocolError) -> Dict[str, Any]:
    """Decode ``response.body`` as a JSON object, or raise ``error_class``.

    The body is decoded here rather than with ``requests``' ``.json()`` (whose error
    type changed in 2.27), and never copied into the message.
    """
    try:
        value = loads_json(response.body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSON errors are ValueErrors
        raise error_class(
            "{} from {} is not valid JSON ({} bytes, HTTP {})".format(
                what, redact_url(response.url), len(response.body), response.status),
            status_code=response.status) from None
    if not isinstance(value, dict):
        raise error_class(
            "{} from {} is JSON but not an object".format(what, redact_url(response.url)),
            status_code=response.status)
    return value


class Transport(abc.ABC):
    """Sends one :class:`HttpRequest` and returns the :class:`HttpResponse`.

    Implementations apply the https policy, a timeout and a body-size cap, and raise
    :class:`~mcpauth.errors.TransportError` when no response arrives.
    """

    allow_insecure_http = False

    @abc.abstractmethod
    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``."""


class _NoAuth(object):
    """Stops requests from applying ``session.auth`` (possibly an mcpauth provider)."""

    def __call__(self, r: Any) -> Any:
        return r


class RequestsTransport(Transport):
    """A :class:`Transport` on a ``requests.Session``.

    Args:
        session: the session whose TLS and proxy settings apply. A new one by default.
            Its headers, cookies and ``auth`` are *not* sent to authorization servers.
        timeout: seconds for connect and read, for every request.
        max_response_bytes: a larger response body raises ``ProtocolError``.
        allow_insecure_http: allow http to non-loopback hosts. For tests only.
        max_redirects: redirects followed by plain GETs, within the origin of the URL
            (never by credentialed requests; a redirect to another origin is returned).

    Raises:
        ConfigurationError: ``timeout`` is not a positive number.
    """

    def __init__(self, session: Any = None, timeout: float = DEFAULT_TIMEOUT,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 allow_insecure_http: bool = False,
                 max_redirects: int = DEFAULT_MAX_REDIRECTS) -> None:
        if timeout is None or timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        self._session = session
        # A session we create ourselves is used a few times per token lifetime; keeping
        # idle sockets open in it would only leak them, so its connections are closed
        # after each response. A caller's session keeps its own pooling.
        self._owns_session = session is None
        if self._owns_session:
            _fork.register(self)
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.allow_insecure_http = allow_insecure_http
        self.max_redirects = max_redirects

    def __repr__(self) -> str:
        return ("RequestsTransport(timeout={!r}, max_response_bytes={!r}, "
                "allow_insecure_http={!r})").format(
            self.timeout, self.max_response_bytes, self.allow_insecure_http)

    def _after_fork(self) -> None:
        # A forked child must not share the parent's connection pool (and its lock).
        self._session = None

    @property
    def session(self) -> Any:
        if self._session is None:
            import requests
            self._session = requests.Session()
        return self._session

    def __call__(self, request: HttpRequest) -> HttpResponse:
        """Send ``request``; follow same-origin redirects of a plain GET.

        ``timeout`` bounds the whole call, redirects included, end to end: connecting,
        sending, waiting for and reading the response, however slowly the peer drips
        its bytes.

        Raises:
            InsecureEndpointError: a URL (or a same-origin redirect target) that the https
                policy refuses or that is not a valid URL.
            TransportError: no complete response within ``timeout``.
            ProtocolError: a response body over ``max_response_bytes`` (after
                decompression), or a ``Content-Encoding`` other than gzip or deflate.
        """
        deadline = time.monotonic() + self.timeout
        hops = 0
        origin = _origin(request.url)
        while True:
            response = self._send_once(request, deadline)
            location = response.header("Location")
            if (response.status in _REDIRECT_STATUSES and location and request.method == "GET"
                    and not request.credentialed and hops < self.max_redirects):
                target = urljoin(request.url, location)
                if origin is None or _origin(target) != origin:
                    # Another origin: its host never passed the caller's SSRF checks.
                    logger.info("not following the redirect from %s to %s: another origin",
                                redact_url(request.url), redact_url(target))
                    return response
                hops += 1
                logger.debug("following redirect %s -> %s", redact_url(request.url),
                             redact_url(target))
                request = request._replace(url=target)
                continue
            return response

    def _send_once(self, request: HttpRequest, deadline: float) -> HttpResponse:
        import requests

        check_url(request.url, self.allow_insecure_http)
        prepared = requests.PreparedRequest()
        headers = dict(request.headers)
        if self._owns_session:
            headers.setdefault("Connection", "close")
        safe_url = redact_url(request.url)
        try:
            prepared.prepare(method=request.method, url=request.url,
                             headers=headers, data=request.body, auth=_NoAuth())
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema):
            # check_url() accepts what urlsplit() parses; requests (IDNA, urllib3) is
            # stricter, e.g. "https://*.example/" or "https://.example/".
            raise InsecureEndpointError("endpoint URL {} is not a valid URL".format(
                safe_url), url=safe_url) from None
        # The exchange runs in a worker thread so that the deadline holds whatever the
        # peer does: socket timeouts bound each wait for a byte, not the sum of them (a
        # peer sending one byte a second never trips them). At the deadline the caller
        # gets its TransportError, and the socket of a response being read is shut down,
        # which ends the worker's read at once. A worker still waiting for the status line
        # and headers (urllib3 does not expose that socket) is left to end at the peer's
        # next silence longer than ``timeout``; it then closes the response unread.
        exchange = _Exchange(self, request, prepared, safe_url)
        worker = threading.Thread(target=exchange.run, name="mcpauth-http")
        worker.daemon = True
        worker.start()
        if not exchange.done.wait(max(0.0, deadline - time.monotonic())):
            exchange.abandon()
            raise TransportError("{} {} timed out after {} s".format(
                request.method, safe_url, self.timeout))
        if exchange.error is not None:
            raise exchange.error
        assert exchange.result is not None
        return exchange.result

    def _exchange(self, request: HttpRequest, prepared: Any, safe_url: str,
                  exchange: "_Exchange") -> HttpResponse:
        import requests
        from urllib3.exceptions import LocationParseError

        session = self.session
        start = time.monotonic()
        try:
            # The session's own verify, cert and proxies are passed as the request's values
            # so that REQUESTS_CA_BUNDLE or *_PROXY in the environment do not override what
            # the caller set on the session (they still fill in what the session leaves
            # unset).
            settings = session.merge_environment_settings(
                prepared.url, dict(session.proxies or {}), True, session.verify,
                session.cert)
            # The adapter, not session.send(): with allow_redirects=False, session.send()
            # still reads a whole 3xx body (to prepare ``response.next``) before the size cap
            # below can act, and it stores the peer's cookies in the caller's session.
            adapter = session.get_adapter(prepared.url)
            resp = adapter.send(prepared, timeout=self.timeout, **settings)
        except LocationParseError:
            # urllib3 parses the host again when it connects ("https://a..b/"), and some
            # requests versions let its LocationParseError through unwrapped.
            raise InsecureEndpointError("endpoint URL {} (or the proxy URL for it) is not a "
                                        "valid URL".format(safe_url), url=safe_url) from None
        except requests.exceptions.Timeout as exc:
            raise TransportError("{} {} timed out after {} s".format(
                request.method, safe_url, self.timeout)) from exc
        except requests.exceptions.SSLError as exc:
            raise TransportError("{} {} failed: TLS error".format(
                request.method, safe_url)) from exc
        except requests.exceptions.ConnectionError as exc:
            raise TransportError("{} {} failed: could not connect ({})".format(
                request.method, safe_url, type(exc).__name__)) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError("{} {} failed ({})".format(
                request.method, safe_url, type(exc).__name__)) from exc
        try:
            if exchange.attach(resp):
                body = self._read_capped(resp, request)
            else:
                body = b""  # abandoned while waiting for the headers; nobody reads this
        finally:
            resp.close()
            if self._owns_session:
                # Some urllib3 versions pool the socket despite "Connection: close";
                # closing our own session's pools leaves nothing open behind us.
                session.close()
        elapsed_ms = (time.monotonic() - start) * 1000.0
        logger.debug("%s %s -> %s (%.0f ms)", request.method, safe_url, resp.status_code,
                     elapsed_ms)
        return HttpResponse(resp.status_code, tuple(resp.headers.items()), body, request.url)

    def _read_capped(self, resp: Any, request: HttpRequest) -> bytes:
        """The body, decompressed here in small pieces and capped.

        urllib3 (1.24 on RHEL 8 in particular) inflates a whole compressed read at once,
        so a small gzip bomb costs a hundred times its size before any cap can act; here
        no step holds more than ``_READ_SIZE`` compressed or ``_INFLATE_SIZE`` inflated
        bytes beyond the capped body itself.
        """
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error
        from urllib3.exceptions import ReadTimeoutError

        limit = self.max_response_bytes
        where = redact_url(request.url)
        length = (resp.headers.get("Content-Length") or "").strip()
        digits = length.lstrip("0")
        # ASCII digits only ("²".isdigit() is True), and no int() of a 64 KiB number.
        if _DIGITS.match(length) and (len(digits) > len(str(limit)) or int(digits or 0) > limit):
            raise ProtocolError("response from {} is {} bytes, over the {} byte limit".format(
                where, length if len(length) < 30 else "a " + str(len(length)) + "-digit number of",
                limit), status_code=resp.status_code)
        chunks: List[bytes] = []
        size = 0
        try:
            for piece in iter_decoded(resp, where):
                size += len(piece)
                if size > limit:
                    raise ProtocolError("response from {} exceeds the {} byte limit".format(
                        where, limit), status_code=resp.status_code)
                chunks.append(piece)
        except ReadTimeoutError as exc:
            raise TransportError("{} {} timed out after {} s".format(
                request.method, where, self.timeout)) from exc
        except (Urllib3Error, OSError, requests.exceptions.RequestException) as exc:
            raise TransportError("{} {} failed while reading the response ({})".format(
                request.method, where, type(exc).__name__)) from exc
        return b"".join(chunks)


def iter_decoded(resp: Any, where: str) -> Iterator[bytes]:
    """The body of a streamed ``requests`` response, in pieces of at most 64 KiB.

    A ``Content-Encoding`` of gzip or deflate is undone here, in bounded steps, rather
    than by urllib3 (1.24 inflates a whole compressed read at once: 64 KiB of a gzip
    bomb become 64 MiB before any cap can act). ``where`` names the URL in errors.

    Raises:
        ProtocolError: an unsupported ``Content-Encoding`` or corrupt compressed data.
        urllib3 and socket errors from reading, as they are.
    """
    decoder = _Decoder(resp.headers.get("Content-Encoding"), where, resp.status_code)
    raw: Any = resp.raw
    reads: Iterable[bytes]
    from_urllib3 = isinstance(raw, _urllib3_response_types())
    if from_urllib3:
        # stream() yields each chunk of a chunked body as it arrives (an SSE stream's
        # events are read as they come), at most _READ_SIZE bytes of it at a time.
        reads = raw.stream(_READ_SIZE, decode_content=False)
    else:  # another raw stream, from a caller's own adapter, gives the bytes as sent
        reads = iter(functools.partial(raw.read, _READ_SIZE), b"")
    for data in reads:
        for piece in decoder.feed(data):
            yield piece


def _urllib3_response_types() -> Tuple[type, ...]:
    import urllib3.response

    base = getattr(urllib3.response, "BaseHTTPResponse", None)  # urllib3 2
    return (urllib3.response.HTTPResponse,) + ((base,) if base is not None else ())


# Compressed bytes read at a time, and the most one inflate step may produce.
_READ_SIZE = 16384
_INFLATE_SIZE = 65536


class _Decoder(object):
    """Undoes a ``Content-Encoding`` of gzip or deflate in bounded steps (RFC 9110 §8.4.1).

    mcpauth sends no ``Accept-Encoding`` of its own (http.client asks for ``identity``),
    but a peer may compress anyway, as urllib3 would have decoded. ``deflate`` is the
    zlib format, or raw deflate as some servers send it (urllib3 accepts both).
    """

    def __init__(self, encoding: Optional[str], where: str, status: int) -> None:
        codings = [c.strip().lower() for c in (encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        self._where = where
        self._status = status
        self._kind: Optional[str] = None
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise ProtocolError("response from {} has an unsupported Content-Encoding {!r}".format(
                where, clean_text(encoding or "")[:100]), status_code=status)
        if codings:
            self._kind = "deflate" if codings[0] == "deflate" else "gzip"
            self._obj = self._new()
            self._started = False
            self._head = b""

    def _new(self, raw: bool = False) -> Any:
        if self._kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    def _error(self) -> ProtocolError:
        return ProtocolError("response from {} is not valid {} data".format(
            self._where, self._kind), status_code=self._status)

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of ``data``, each at most ``_INFLATE_SIZE`` bytes."""
        if self._kind is None:
            if data:
                yield data
            return
        while True:
            try:
                out = self._obj.decompress(data, _INFLATE_SIZE)
            except zlib.error:
                if self._kind == "deflate" and not self._started:
                    # Not the zlib format: raw deflate, from the first byte.
                    self._started = True
                    self._obj = self._new(raw=True)
                    data = self._head + data
                    continue
                raise self._error() from None
            if not self._started:  # keep what the zlib attempt consumed, for a retry
                self._head += data[:len(data) - len(self._obj.unconsumed_tail)]
                self._started = bool(out) or len(self._head) > 2
            if out:
                yield out
            data = self._obj.unconsumed_tail
            if not data and self._obj.eof and self._obj.unused_data:
                if self._kind != "gzip":
                    return  # bytes after the end of a deflate stream are ignored
                data = self._obj.unused_data  # the next member of a multi-member gzip
                self._obj = self._new()
            if not data and len(out) < _INFLATE_SIZE:
                return


class _Exchange(object):
    """One request's exchange, run in a worker thread, and the caller's way to abandon it."""

    def __init__(self, transport: RequestsTransport, request: HttpRequest, prepared: Any,
                 safe_url: str) -> None:
        self._transport = transport
        self._request = request
        self._prepared = prepared
        self._safe_url = safe_url
        self._lock = threading.Lock()
        self._response: Any = None
        self._abandoned = False
        self.done = threading.Event()
        self.result: Optional[HttpResponse] = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.result = self._transport._exchange(self._request, self._prepared,
                                                    self._safe_url, self)
        except BaseException as exc:  # noqa: B036 - handed to the caller's thread
            self.error = exc
        finally:
            self.done.set()

    def attach(self, response: Any) -> bool:
        """Record the response being read; False when the caller has already given up."""
        with self._lock:
            self._response = response
            return not self._abandoned

    def abandon(self) -> None:
        """Give up: shut down the socket of a response being read, so the read ends now."""
        with self._lock:
            self._abandoned = True
            response = self._response
        if response is None:
            return  # still connecting or waiting for headers: attach() will say stop
        sock = getattr(getattr(getattr(response, "raw", None), "_connection", None),
                       "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
