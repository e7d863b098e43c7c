"""A small synchronous MCP client over Streamable HTTP, for both MCP lifecycles.

MCP "Transports" (Streamable HTTP) and "Lifecycle", revisions 2024-11-05 to 2026-07-28:

* **Stateful lifecycle** (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25): ``initialize``
  with ``protocolVersion``, ``capabilities`` and ``clientInfo``, then
  ``notifications/initialized``; ``MCP-Protocol-Version: <negotiated>`` on every later
  request (required since 2025-06-18); an ``Mcp-Session-Id`` the server issues is echoed
  on every later request, a 404 on a request carrying it means the session expired (the
  client initializes again, once), and the session is ended with DELETE on close.
* **Stateless lifecycle** (2026-07-28, SEP-2575 / SEP-2567): no ``initialize`` and no
  session. Every request carries ``params._meta`` with
  ``io.modelcontextprotocol/protocolVersion``, ``.../clientCapabilities`` (declaring the
  auth extension in use) and ``.../clientInfo``, plus the SEP-2243
  headers ``MCP-Protocol-Version`` (equal to ``_meta``), ``Mcp-Method`` and, for
  ``tools/call``, ``resources/read`` and ``prompts/get``, ``Mcp-Name``. An
  ``UnsupportedProtocolVersion`` error (-32022) is retried once with a version from
  ``data.supported``.
* **Version detection** (the default, ``protocol_version=None``): the first request
  goes out on the 2026-07-28 wire and its reply tells the lifecycle, so detection costs
  no extra round trip (a cron run with a cached token sends one HTTP request). A 2xx
  (a result or an application error), or a 2026-07-28 protocol error (-32020, -32021,
  -32022 with a 4xx, -32602 with 400, -32601 with 404), means a modern server. A 400,
  404 or 405 whose body is not a JSON-RPC error, or is one with code -32000 or -32600
  (the refusals of the pre-2026 SDKs: the TypeScript SDK's ``400 -32000 Bad Request:
  Unsupported protocol version``, the Python SDK's -32600), means a legacy server: the
  client runs ``initialize`` with 2025-11-25 (once, whatever the number of threads)
  and sends the request again on the stateful wire. If that ``initialize`` fails too,
  the error of the first reply is raised (with its HTTP status) and the next request
  detects again. Any other answer (401, 403, 408, 413, 415, 429, 5xx, other JSON-RPC
  errors) tells nothing: it is raised as it is, and the next request detects again. A
  -32022 whose ``data.supported`` lists only legacy versions falls back to the best of
  those. An explicit :meth:`MCPClient.connect` detects with ``server/discover``
  instead, by the same rules (a -32601 to it means a modern server without
  ``server/discover``). The result is kept for the client's lifetime. Pass
  ``protocol_version`` to pin one revision (and lifecycle) instead.

Every POST sends ``Content-Type: application/json`` and ``Accept: application/json,
text/event-stream``. A reply is a JSON body or an SSE stream (WHATWG HTML "Server-sent
events", event stream interpretation): ``data:`` lines are joined with LF, comments and
events without data (priming events) are skipped, CRLF, LF and CR all end a line, and the
reply is the JSON-RPC response whose ``id`` matches the request. Notifications in the
stream go to :attr:`MCPClient.notifications` and ``on_notification``. A server request in
a stream of the stateful lifecycle is answered (``ping`` with an empty result, anything
else with -32601), since the client declares no capability that invites one; the
2026-07-28 wire has no server-to-client requests, so there they are only logged. The
bytes read per reply are capped (16 MiB by default).

JSON-RPC 2.0 §5: an ``error`` member raises :class:`~mcpauth.errors.MCPError` (``code``,
``message``, ``data``); a tool result with ``isError`` is returned, not raised.

Authorization is not this module's business: ``auth`` is any ``requests`` auth object,
normally an mcpauth provider, which adds the ``Authorization`` header, answers 401 and
403 ``insufficient_scope`` challenges and replays the request. The client never reads,
sets or logs a token. Redirects are not followed (a 3xx raises ProtocolError naming the
target), so a credentialed POST is never re-sent somewhere else.
"""

import base64
import collections
import copy
import itertools
import json
import logging
import re
import threading
from typing import (Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping,
                    NamedTuple, Optional, Tuple, Union)

import requests

from ._version import __version__
from .discovery import bearer_challenge
from .errors import (
    ConfigurationError,
    InsufficientScopeError,
    MCPAuthError,
    MCPError,
    ProtocolError,
    TransportError,
    UnauthorizedError,
    clean_peer_text,
)
from .transport import check_url, loads_json, redact_url

__all__ = [
    "MCPClient",
    "LATEST_PROTOCOL_VERSION",
    "LEGACY_PROTOCOL_VERSION",
    "STATELESS_PROTOCOL_VERSIONS",
    "STATEFUL_PROTOCOL_VERSIONS",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "META_PROTOCOL_VERSION",
    "META_CLIENT_CAPABILITIES",
    "META_CLIENT_INFO",
    "META_SERVER_INFO",
    "EXTENSION_OAUTH_CLIENT_CREDENTIALS",
    "EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION",
    "DEFAULT_MAX_RESPONSE_BYTES",
]

logger = logging.getLogger("mcpauth")

#: The newest revision, and the only one with the stateless lifecycle.
LATEST_PROTOCOL_VERSION = "2026-07-28"
#: The newest revision with the stateful (initialize) lifecycle; the fallback.
LEGACY_PROTOCOL_VERSION = "2025-11-25"
STATELESS_PROTOCOL_VERSIONS = ("2026-07-28",)
STATEFUL_PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
#: Every revision this client speaks, newest first.
SUPPORTED_PROTOCOL_VERSIONS = STATELESS_PROTOCOL_VERSIONS + STATEFUL_PROTOCOL_VERSIONS

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

EXTENSION_OAUTH_CLIENT_CREDENTIALS = "io.modelcontextprotocol/oauth-client-credentials"
EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION = (
    "io.modelcontextprotocol/enterprise-managed-authorization")

#: Seconds to wait for the connection and between bytes of a reply.
DEFAULT_TIMEOUT = 60.0
#: Largest reply (JSON body or whole SSE stream) read for one request: 16 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Notifications kept in :attr:`MCPClient.notifications`.
NOTIFICATIONS_KEPT = 100
#: Pages :meth:`MCPClient.list_tools` follows before it gives up.
MAX_PAGES = 1000

# JSON-RPC 2.0 §5.1 and MCP 2026-07-28 error codes.
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

_ACCEPT = "application/json, text/event-stream"
_NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_RESERVED_HEADERS = frozenset([
    "authorization", "accept", "content-type", "mcp-protocol-version", "mcp-method",
    "mcp-name", "mcp-session-id"])
_LIFECYCLE_METHODS = frozenset(["initialize", "notifications/initialized"])
_STATELESS = "stateless"
_STATEFUL = "stateful"
_EOL = re.compile(b"[\r\n]")
_CHUNK = 65536

Message = Dict[str, Any]


class _Reply(NamedTuple):
    """What one POST produced: the HTTP status, the JSON-RPC message for our request
    (None when there was none) and the response headers."""

    status: int
    message: Optional[Message]
    headers: Mapping[str, str]


class _SSEEvent(NamedTuple):
    event: str
    data: str
    id: str


# ----------------------------------------------------------------------------- SSE

def _iter_lines(chunks: Iterable[bytes], limit: int, what: str,
                status: int) -> Iterator[bytes]:
    """Split a byte stream into lines ended by CRLF, LF or CR (WHATWG HTML §9.2.5).

    A CR at the end of a chunk waits for the next one, which may start with its LF.
    More than ``limit`` bytes in total raise ProtocolError.
    """
    buf = bytearray()
    scan = 0
    total = 0
    for chunk in chunks:
        if not chunk:
            continue
        total += len(chunk)
        if total > limit:
            raise ProtocolError("{} exceeds the {} byte limit".format(what, limit),
                                status_code=status)
        buf.extend(chunk)
        start = 0
        while True:
            match = _EOL.search(buf, scan)
            if match is None:
                scan = len(buf)
                break
            end = match.start()
            if buf[end] == 0x0D:
                if end + 1 == len(buf):
                    scan = end  # maybe CRLF split across chunks
                    break
                nxt = end + 2 if buf[end + 1] == 0x0A else end + 1
            else:
                nxt = end + 1
            yield bytes(buf[start:end])
            start = scan = nxt
        if start:
            del buf[:start]
            scan -= start
    if buf.endswith(b"\r"):
        yield bytes(buf[:-1])
    # An unterminated last line cannot complete an event: it is dropped.


def _iter_sse_events(lines: Iterable[bytes]) -> Iterator[_SSEEvent]:
    """Interpret event-stream lines (WHATWG HTML §9.2.6) and yield dispatched events.

    ``data`` values are joined with LF; ``event`` names the type (default "message");
    ``id`` is remembered unless it contains NUL; comments (``:``) and unknown fields are
    ignored; an event still pending when the stream ends is discarded.
    """
    data: List[str] = []
    event = ""
    last_id = ""
    first = True
    for raw in lines:
        line = raw.decode("utf-8", "replace")
        if first:
            first = False
            if line.startswith("\ufeff"):
                line = line[1:]
        if not line:
            if data:
                yield _SSEEvent(event or "message", "\n".join(data), last_id)
            data = []
            event = ""
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id" and "\x00" not in value:
            last_id = value


# ----------------------------------------------------------------------------- helpers

def _header_value(value: str) -> str:
    """An ``Mcp-Name`` value: as is when it is plain printable ASCII, else the SEP-2243
    ``=?base64?<UTF-8 bytes, base64>?=`` sentinel form."""
    plain = (all(" " <= ch <= "~" for ch in value) and value == value.strip()
             and not value.startswith("=?base64?"))
    if plain and value:
        return value
    return "=?base64?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _kind(message: Any) -> str:
    """Classify a JSON-RPC 2.0 message: request, notification, response or invalid."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return "invalid"
    if "method" in message:
        if not isinstance(message["method"], str):
            return "invalid"
        return "request" if "id" in message else "notification"
    if ("result" in message) == ("error" in message):
        return "invalid"
    if "error" in message and not isinstance(message["error"], dict):
        return "invalid"
    return "response"


def _matches(message: Message, msg_id: Any) -> bool:
    got = message.get("id")
    return _is_id(got) and type(got) is type(msg_id) and got == msg_id


def _mcp_error(error: Dict[str, Any], status: int) -> MCPError:
    return MCPError(error.get("message"), code=error.get("code"), data=error.get("data"),
                    status_code=status)


# JSON-RPC codes the pre-2026 transports use to refuse a request they cannot take: the
# TypeScript SDK 1.x sends -32000 ("Bad Request: Unsupported protocol version", "Server
# not initialized", "Mcp-Session-Id header is required"), the Python SDK -32600.
_LEGACY_REFUSAL_CODES = (-32000, -32600)
# Statuses a pre-2026 server gives such a refusal (405: a POST it does not take at all).
_LEGACY_REFUSAL_STATUSES = (400, 404, 405)


def _lifecycle_of(reply: _Reply) -> Optional[str]:
    """What the reply to a request sent on the 2026-07-28 wire tells of the lifecycle.

    The one rule for lazy detection and :meth:`MCPClient.connect` (a client that
    speaks both lifecycles inspects the body of a 400):

    * ``_STATELESS`` (a 2026-07-28 server): a 2xx (a result, or an error the server
      chose to send, such as an unknown tool), or an error only a 2026-07-28 server
      sends: -32020, -32021 or -32022 with a 4xx, -32602 with 400, -32601 with 404.
    * ``_STATEFUL`` (a pre-2026 server): 400, 404 or 405 whose body is not a JSON-RPC
      error, or is one with code -32000 or -32600.
    * None: nothing is known. 401, 403, 408, 413, 415, 429, 5xx, and any other code:
      the error is the server's answer to the request and is raised as it is.
    """
    status = reply.status
    if 200 <= status < 300:
        return _STATELESS
    error = reply.message.get("error") if reply.message is not None else None
    code = error.get("code") if isinstance(error, dict) else None
    if 400 <= status < 500 and code in (HEADER_MISMATCH, MISSING_REQUIRED_CLIENT_CAPABILITY,
                                        UNSUPPORTED_PROTOCOL_VERSION):
        return _STATELESS
    if (code, status) in ((INVALID_PARAMS, 400), (METHOD_NOT_FOUND, 404)):
        return _STATELESS
    if status in _LEGACY_REFUSAL_STATUSES and (error is None
                                                or code in _LEGACY_REFUSAL_CODES):
        return _STATEFUL
    return None


def _media_type(headers: Mapping[str, str]) -> str:
    return (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def _visible_ascii(value: str) -> bool:
    # MCP "Session Management": the session ID MUST only contain visible ASCII (0x21-0x7E).
    return bool(value) and all("!" <= ch <= "~" for ch in value)


# ----------------------------------------------------------------------------- client

class MCPClient(object):
    """A synchronous MCP client for one Streamable HTTP endpoint.

    Example::

        provider = ClientCredentialsProvider("my-client", secret)
        with MCPClient("https://mcp.example.com/mcp", auth=provider) as client:
            tools = client.list_tools()
            result = client.call_tool("add", {"a": 1, "b": 2})

    Without a pinned ``protocol_version`` the first request also detects the server's
    lifecycle: it goes out on the 2026-07-28 wire, and a reply that shows a pre-2026
    server makes the client ``initialize`` and send it again (see the module docs);
    :meth:`connect` detects up front with ``server/discover`` instead. Requests may run
    from several threads at once (the handshake and lifecycle switches hold a lock).

    Args:
        url: the MCP endpoint (https, or http on a loopback host).
        auth: a ``requests`` auth object, normally an mcpauth provider. None: use the
            session's own ``auth``, if any.
        session: a ``requests.Session`` to send with (its TLS, proxy and ``auth``
            settings apply). Default: a new one, closed by :meth:`close`.
        protocol_version: pin one revision: "2026-07-28" (stateless) or one of
            2024-11-05 .. 2025-11-25 (stateful). None: detect (see the module docs).
        client_info: ``{"name": ..., "version": ...}`` (default: mcpauth and its version).
        capabilities: client capabilities to declare (default none).
        extensions: extension ids to declare in the 2026-07-28 ``clientCapabilities``;
            default: the ``mcp_extension`` of the auth provider, when it has one.
        timeout: seconds to wait for the connection and between bytes of a reply.
        headers: extra headers for every request (not Authorization, Accept,
            Content-Type or the MCP headers).
        on_notification: ``callable(message)`` for each server notification received
            in a reply stream (it runs on the requesting thread).
        max_response_bytes: cap on one reply (JSON body or SSE stream).
        allow_insecure_http: allow plain http to a non-loopback host (tests only).

    Raises:
        ConfigurationError: a bad argument (unsupported ``protocol_version``, reserved
            header, ...).
        InsecureEndpointError: ``url`` is not https and not loopback.
    """

    def __init__(self, url: str, auth: Any = None, session: Any = None,
                 protocol_version: Optional[str] = None, *,
                 client_info: Optional[Mapping[str, Any]] = None,
                 capabilities: Optional[Mapping[str, Any]] = None,
                 extensions: Optional[Union[Iterable[str], Mapping[str, Any]]] = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 headers: Optional[Mapping[str, str]] = None,
                 on_notification: Optional[Callable[[Message], None]] = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 allow_insecure_http: bool = False) -> None:
        check_url(url, allow_insecure_http, "MCP server")
        if protocol_version is not None and protocol_version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise ConfigurationError("protocol_version must be one of {} (or None to detect)"
                                     .format(", ".join(SUPPORTED_PROTOCOL_VERSIONS)))
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        if max_response_bytes <= 0:
            raise ConfigurationError("max_response_bytes must be positive")
        if on_notification is not None and not callable(on_notification):
            raise ConfigurationError("on_notification must be callable")
        info = dict(client_info) if client_info is not None else {
            "name": "mcpauth", "version": __version__}
        if not (isinstance(info.get("name"), str) and info["name"]
                and isinstance(info.get("version"), str) and info["version"]):
            raise ConfigurationError("client_info needs non-empty 'name' and 'version' strings")
        extra = dict(headers or {})
        for name in extra:
            if name.lower() in _RESERVED_HEADERS:
                raise ConfigurationError(
                    "headers must not set {}: the client or the auth provider does".format(
                        name))
        self.url = url
        self.timeout = float(timeout)
        self.max_response_bytes = max_response_bytes
        self._pinned = protocol_version
        self._auth = auth
        self._owns_session = session is None
        self._session = requests.Session() if session is None else session
        self._client_info: Dict[str, Any] = copy.deepcopy(info)
        self._capabilities: Dict[str, Any] = copy.deepcopy(dict(capabilities or {}))
        if extensions is None:
            source = auth if auth is not None else getattr(self._session, "auth", None)
            ext = getattr(source, "mcp_extension", None)
            extensions = [ext] if isinstance(ext, str) and ext else []
        if isinstance(extensions, Mapping):
            self._extensions: Dict[str, Any] = copy.deepcopy(dict(extensions))
        elif isinstance(extensions, str):
            raise ConfigurationError("extensions must be a list of extension ids, not a str")
        else:
            self._extensions = dict((e, {}) for e in extensions)
        self._headers = extra
        self._on_notification = on_notification
        #: The latest server notifications received in reply streams (a bounded deque).
        self.notifications: Deque[Message] = collections.deque(maxlen=NOTIFICATIONS_KEPT)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._mode: Optional[str] = None
        self._version: Optional[str] = None
        self._session_id: Optional[str] = None
        self._server_info: Optional[Dict[str, Any]] = None
        self._server_capabilities: Optional[Dict[str, Any]] = None
        self._instructions: Optional[str] = None
        self._connected = False
        # True until the first reply shows which lifecycle the server speaks (no pin).
        self._detecting = False
        self._closed = False

    def __repr__(self) -> str:
        return "MCPClient(url={!r}, protocol_version={!r})".format(
            redact_url(self.url), self.protocol_version)

    def __enter__(self) -> "MCPClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- state -----------------------------------------------------------------------

    @property
    def protocol_version(self) -> Optional[str]:
        """The revision in use once known (before that, the pinned one or None)."""
        if self._detecting:
            return None
        if not self._connected:
            return self._pinned  # e.g. after a connect() that failed
        return self._version if self._version is not None else self._pinned

    @property
    def lifecycle(self) -> Optional[str]:
        """``"stateless"`` (2026-07-28) or ``"stateful"`` once known, else None."""
        return self._mode if self._connected and not self._detecting else None

    @property
    def session_id(self) -> Optional[str]:
        """The ``Mcp-Session-Id`` the server issued (stateful lifecycle), or None."""
        return self._session_id

    @property
    def server_info(self) -> Optional[Dict[str, Any]]:
        """The server's ``serverInfo`` (initialize), or the ``_meta`` serverInfo of
        ``server/discover`` or of the latest 2026-07-28 result that carried one."""
        return self._server_info

    @property
    def server_capabilities(self) -> Optional[Dict[str, Any]]:
        """The capabilities the server declared, when it declared them."""
        return self._server_capabilities

    @property
    def instructions(self) -> Optional[str]:
        """The ``instructions`` string from ``initialize``, if any."""
        return self._instructions

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    # -- public API ------------------------------------------------------------------

    def connect(self) -> Dict[str, Any]:
        """Connect now instead of on the first request.

        Stateful: ``initialize`` and ``notifications/initialized``. Stateless:
        ``server/discover`` (a server without it is accepted). Detecting (no pinned
        version): ``server/discover`` on the 2026-07-28 wire, falling back to the
        stateful lifecycle for a legacy server. Calling it again does nothing.

        Not needed before a request: without it the first request detects the lifecycle
        by itself, with no extra round trip. Call it to learn ``serverInfo`` and the
        capabilities first, or to check the server before any real work.

        Returns:
            ``{"protocolVersion", "lifecycle", "serverInfo", "capabilities"}``.

        Raises:
            MCPError: the server answered the handshake with a JSON-RPC error.
            ProtocolError: an unusable answer (bad version, not JSON-RPC, HTTP error).
            TransportError: no answer.
            UnauthorizedError, InsufficientScopeError: from the auth provider.
        """
        with self._lock:
            self._check_open()
            if not self._connected:
                self._connect(explicit=True)
        return {"protocolVersion": self._version, "lifecycle": self._mode,
                "serverInfo": self._server_info, "capabilities": self._server_capabilities}

    def request(self, method: str, params: Optional[Mapping[str, Any]] = None) -> Any:
        """Send a JSON-RPC request and return its ``result``.

        Args:
            method: the MCP method, e.g. ``"resources/list"``.
            params: its params (not modified; 2026-07-28 ``_meta`` keys are added to a copy).

        Returns:
            The ``result`` member of the response.

        Raises:
            MCPError: the response is a JSON-RPC error (``.code``, ``.data``).
            ProtocolError: no usable JSON-RPC response (``.status_code``).
            TransportError: the request failed (connection, TLS, timeout).
            UnauthorizedError, InsufficientScopeError: the auth provider gave up.
            ConfigurationError: the client is closed, or a lifecycle method was given.
        """
        return self._request(method, self._prepare(method, params))

    def notify(self, method: str, params: Optional[Mapping[str, Any]] = None) -> None:
        """Send a JSON-RPC notification (no reply is expected; the server answers 202).

        Raises:
            MCPError, ProtocolError, TransportError: as :meth:`request`.
        """
        self._notify(method, self._prepare(method, params))

    def list_tools(self) -> List[Dict[str, Any]]:
        """All tools of the server, following ``nextCursor`` across pages.

        Returns:
            The tool objects (``name``, ``description``, ``inputSchema``, ...).

        Raises:
            ProtocolError: a page without a ``tools`` list, a repeated cursor, or more
                than :data:`MAX_PAGES` pages.
            MCPError, TransportError: as :meth:`request`.
        """
        tools: List[Dict[str, Any]] = []
        seen = set()
        cursor: Optional[str] = None
        for _ in range(MAX_PAGES):
            params = {"cursor": cursor} if cursor is not None else {}
            result = self.request("tools/list", params)
            page = result.get("tools") if isinstance(result, dict) else None
            if not isinstance(page, list) or not all(isinstance(t, dict) for t in page):
                raise ProtocolError("tools/list from {} did not return a list of tools".format(
                    redact_url(self.url)))
            tools.extend(page)
            cursor = result.get("nextCursor")
            if cursor is None:
                return tools
            if not isinstance(cursor, str) or cursor in seen:
                raise ProtocolError("tools/list from {} returned an invalid or repeated "
                                    "nextCursor".format(redact_url(self.url)))
            seen.add(cursor)
        raise ProtocolError("tools/list from {} did not end after {} pages".format(
            redact_url(self.url), MAX_PAGES))

    def call_tool(self, name: str, arguments: Optional[Mapping[str, Any]] = None
                  ) -> Dict[str, Any]:
        """Call a tool and return its result.

        A tool that fails answers with ``isError: true`` in the result; that result is
        returned as it is (MCP "Tools", error handling), not raised.

        Args:
            name: the tool name.
            arguments: its arguments (default ``{}``).

        Returns:
            The ``CallToolResult`` (``content``, optional ``structuredContent``,
            ``isError``).

        Raises:
            MCPError: a protocol error (unknown tool, invalid arguments, ...).
            ProtocolError: the result is not an object.
            TransportError: as :meth:`request`.
        """
        if not isinstance(name, str) or not name:
            raise TypeError("name must be a non-empty string")
        if arguments is not None and not isinstance(arguments, Mapping):
            raise TypeError("arguments must be a mapping or None")
        result = self.request("tools/call", {"name": name,
                                             "arguments": dict(arguments or {})})
        if not isinstance(result, dict):
            raise ProtocolError("tools/call from {} did not return an object".format(
                redact_url(self.url)))
        return result

    def close(self) -> None:
        """End the session and release connections. Idempotent.

        In the stateful lifecycle an issued ``Mcp-Session-Id`` is ended with DELETE (a
        405 means the server does not allow that, which is fine). Failures are logged,
        not raised. A session the client created is closed; a given one is left open.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session_id = self._session_id if self._mode == _STATEFUL else None
            self._session_id = None
        try:
            if session_id is not None:
                self._delete_session(session_id)
        finally:
            if self._owns_session:
                self._session.close()

    # -- lifecycle -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this MCPClient is closed")

    def _prepare(self, method: str, params: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        """Check a caller's method and params, connect if needed; return a copy of params."""
        if not isinstance(method, str) or not method:
            raise TypeError("method must be a non-empty string")
        if method in _LIFECYCLE_METHODS:
            raise ConfigurationError("{} is sent by the client itself (connect())".format(
                method))
        if params is not None and not isinstance(params, Mapping):
            raise TypeError("params must be a mapping or None")
        self._ensure_connected()
        return dict(params or {})

    def _ensure_connected(self) -> None:
        if self._connected:
            self._check_open()
            return
        with self._lock:
            self._check_open()
            if not self._connected:
                self._connect(explicit=False)

    def _connect(self, explicit: bool) -> None:
        pinned = self._pinned
        if pinned in STATEFUL_PROTOCOL_VERSIONS:
            self._initialize(pinned)
        elif pinned is not None:
            self._mode, self._version = _STATELESS, pinned
            if explicit:
                self._discover(probe=False)
        elif explicit:
            self._mode, self._version = _STATELESS, LATEST_PROTOCOL_VERSION
            self._discover(probe=True)
        else:
            # Detect lazily: the first real request goes out on the 2026-07-28 wire and
            # its answer tells the lifecycle, so a warm cron run costs one request, not a
            # server/discover probe plus the call.
            self._mode, self._version = _STATELESS, LATEST_PROTOCOL_VERSION
            self._detecting = True
        self._connected = True

    def _discover(self, probe: bool, retried: bool = False) -> None:
        """``server/discover`` on the stateless wire; with ``probe``, detect a legacy
        server from the answer (a client that speaks both lifecycles inspects the body of
        a 400) and fall back to ``initialize``. The answer is classified by
        :func:`_lifecycle_of`, as the first request of lazy detection is."""
        reply = self._post_stateless("server/discover", {}, self._next_id())
        message = reply.message
        if message is not None and "result" in message:
            result = message["result"]
            if isinstance(result, dict):
                meta = result.get("_meta")
                info = meta.get(META_SERVER_INFO) if isinstance(meta, dict) else None
                self._server_info = info if isinstance(info, dict) else None
                caps = result.get("capabilities")
                self._server_capabilities = caps if isinstance(caps, dict) else None
            logger.debug("MCP server %s speaks %s (server/discover)", redact_url(self.url),
                         self._version)
            return
        error = message["error"] if message is not None else None
        code = error.get("code") if error is not None else None
        if code == UNSUPPORTED_PROTOCOL_VERSION and error is not None:
            choice = None if retried else self._choose_version(error.get("data"))
            if choice in STATELESS_PROTOCOL_VERSIONS and self._pinned is None:
                self._version = choice
                return self._discover(probe, retried=True)
            if choice in STATEFUL_PROTOCOL_VERSIONS and probe:
                logger.debug("MCP server %s offers only stateful versions; using %s",
                             redact_url(self.url), choice)
                return self._initialize(choice, fallback_from=(reply, "server/discover"))
            raise _mcp_error(error, reply.status)
        lifecycle = _lifecycle_of(reply)
        if lifecycle == _STATELESS and code == METHOD_NOT_FOUND:
            return  # a 2026-07-28 server without server/discover: still modern
        if probe and lifecycle == _STATEFUL:
            logger.debug("MCP server %s is not a 2026-07-28 server (HTTP %d); falling back "
                         "to initialize", redact_url(self.url), reply.status)
            return self._initialize(LEGACY_PROTOCOL_VERSION,
                                    fallback_from=(reply, "server/discover"))
        raise self._reply_error(reply, "server/discover")

    def _choose_version(self, data: Any) -> Optional[str]:
        """The newest version in a -32022 ``data.supported`` that this client speaks and
        is not the one just refused."""
        supported = data.get("supported") if isinstance(data, dict) else None
        if not isinstance(supported, list):
            return None
        for version in SUPPORTED_PROTOCOL_VERSIONS:
            if version in supported and version != self._version:
                return version
        return None

    def _initialize(self, version: str,
                    fallback_from: Optional[Tuple[_Reply, str]] = None) -> None:
        """The stateful handshake (MCP "Lifecycle", initialization phase).

        The new state is stored only once the server has answered, so a request running
        on another thread never sees half of it.

        ``fallback_from`` is the (reply, method) of a 2026-07-28 request whose answer
        looked like a pre-2026 server's. If ``initialize`` gets no result either (a
        JSON-RPC error such as -32601, an HTTP error, an unusable reply), that answer
        was not a legacy server's after all: the error of the original reply is raised
        (from the initialize failure), so the caller sees the status the server gave
        the request that was actually asked for.
        """
        params = {"protocolVersion": version,
                  "capabilities": copy.deepcopy(self._capabilities),
                  "clientInfo": copy.deepcopy(self._client_info)}
        msg_id = self._next_id()
        # No MCP-Protocol-Version here: the header is for requests after initialization,
        # and the TypeScript SDK answers 400 to a value it does not know.
        try:
            reply = self._post("initialize", {"jsonrpc": "2.0", "id": msg_id,
                                              "method": "initialize", "params": params},
                               {}, msg_id)
            result = self._result_of(reply, "initialize")
        except (MCPError, ProtocolError) as exc:
            if fallback_from is None:
                raise
            original, method = fallback_from
            logger.debug("MCP server %s: the fallback initialize failed too (%s); "
                         "reporting the answer to %s", redact_url(self.url),
                         type(exc).__name__, method)
            raise self._reply_error(original, method) from exc
        negotiated = result.get("protocolVersion") if isinstance(result, dict) else None
        if negotiated not in STATEFUL_PROTOCOL_VERSIONS:
            raise ProtocolError("initialize: the MCP server at {} chose protocol version {}, "
                                "which this client does not support".format(
                                    redact_url(self.url), repr(negotiated)[:40]))
        assert isinstance(result, dict)
        session_id = reply.headers.get("Mcp-Session-Id")
        if session_id is not None and not _visible_ascii(session_id):
            raise ProtocolError("initialize: the MCP server at {} sent an invalid "
                                "Mcp-Session-Id".format(redact_url(self.url)))
        self._mode, self._version, self._session_id = _STATEFUL, negotiated, session_id
        info = result.get("serverInfo")
        self._server_info = info if isinstance(info, dict) else None
        caps = result.get("capabilities")
        self._server_capabilities = caps if isinstance(caps, dict) else None
        instructions = result.get("instructions")
        self._instructions = instructions if isinstance(instructions, str) else None
        logger.debug("MCP server %s: initialized with %s%s", redact_url(self.url), negotiated,
                     " (session)" if session_id else "")
        self._notify_stateful("notifications/initialized", None)

    def _delete_session(self, session_id: str) -> None:
        headers = dict(self._headers)
        headers["Mcp-Session-Id"] = session_id
        if self._version is not None:
            headers["MCP-Protocol-Version"] = self._version
        try:
            response = self._session.delete(self.url, headers=headers, auth=self._auth,
                                            timeout=self.timeout, allow_redirects=False)
            response.close()
            logger.debug("MCP DELETE session %s -> HTTP %d", redact_url(self.url),
                         response.status_code)
        except (MCPAuthError, requests.exceptions.RequestException) as exc:
            logger.debug("MCP DELETE session %s failed (%s)", redact_url(self.url),
                         type(exc).__name__)

    # -- requests --------------------------------------------------------------------

    def _fell_back(self, reply: _Reply, method: str) -> bool:
        """End detection with the reply to a first request sent on the 2026-07-28 wire.

        :func:`_lifecycle_of` classifies it. A legacy answer makes the client
        ``initialize`` (one thread does it, the others wait on the lock and find it
        done). True when the request must be sent again on the stateful wire; False
        when the reply stands: a modern server, or an answer that tells nothing (401,
        403, 413, 429, 5xx, ...), after which the next request detects again. If the
        fallback ``initialize`` fails, the error of ``reply`` is raised and detection
        goes on.
        """
        lifecycle = _lifecycle_of(reply)
        if lifecycle is None:
            return False
        if lifecycle == _STATELESS:
            self._detecting = False
            return False
        with self._lock:
            if self._detecting:
                logger.debug("MCP server %s is not a 2026-07-28 server (HTTP %d); falling "
                             "back to initialize", redact_url(self.url), reply.status)
                try:
                    self._initialize(LEGACY_PROTOCOL_VERSION, fallback_from=(reply, method))
                finally:
                    # Initialized (even if notifications/initialized then failed): the
                    # lifecycle is known. Otherwise detection goes on.
                    if self._mode == _STATEFUL:
                        self._detecting = False
            return self._mode == _STATEFUL

    def _request(self, method: str, params: Dict[str, Any], retried: bool = False) -> Any:
        # Read before the mode: a thread that finds detection over finds the mode it
        # settled; one that finds it running sends on the 2026-07-28 wire and lets
        # _fell_back settle the reply (another thread may have initialized meanwhile).
        detecting = self._detecting
        if self._mode == _STATELESS:
            version = self._version
            reply = self._post_stateless(method, params, self._next_id())
            if detecting and self._fell_back(reply, method):
                return self._request(method, params, retried=True)
            error = reply.message.get("error") if reply.message is not None else None
            if (not retried and error is not None
                    and error.get("code") == UNSUPPORTED_PROTOCOL_VERSION):
                if self._switch_version(version, error.get("data")):
                    return self._request(method, params, retried=True)
            self._note_server_info(reply)
            return self._result_of(reply, method)
        session_id = self._session_id
        msg_id = self._next_id()
        reply = self._post(method, {"jsonrpc": "2.0", "id": msg_id, "method": method,
                                    "params": params}, self._stateful_headers(), msg_id)
        if reply.status == 404 and session_id is not None and not retried:
            # MCP "Session Management": 404 to a request with a session id means the
            # session ended; the client MUST start a new one with a fresh initialize.
            with self._lock:
                if self._session_id == session_id:
                    logger.debug("MCP session at %s expired; initializing again",
                                 redact_url(self.url))
                    self._initialize(self._version or LEGACY_PROTOCOL_VERSION)
            return self._request(method, params, retried=True)
        return self._result_of(reply, method)

    def _switch_version(self, refused: Optional[str], data: Any) -> bool:
        """After -32022: move to a version the server listed, once. True if switched."""
        with self._lock:
            if self._mode != _STATELESS or self._version != refused:
                return True  # another thread switched already
            choice = self._choose_version(data)
            if choice in STATELESS_PROTOCOL_VERSIONS and self._pinned is None:
                self._version = choice
                return True
            if choice in STATEFUL_PROTOCOL_VERSIONS and self._pinned is None:
                self._initialize(choice)
                return True
            return False

    def _note_server_info(self, reply: _Reply) -> None:
        """Keep the ``_meta`` serverInfo a 2026-07-28 result carries (servers SHOULD send
        it on every result), so a client that never sent server/discover knows it too."""
        result = reply.message.get("result") if reply.message is not None else None
        meta = result.get("_meta") if isinstance(result, dict) else None
        info = meta.get(META_SERVER_INFO) if isinstance(meta, dict) else None
        if isinstance(info, dict):
            self._server_info = info

    def _notify(self, method: str, params: Dict[str, Any]) -> None:
        detecting = self._detecting  # before the mode, as in _request
        if self._mode == _STATELESS:
            reply = self._post_stateless(method, params, None)
            if detecting and self._fell_back(reply, method):
                self._notify_stateful(method, params)
            else:
                self._check_notified(reply, method)
        else:
            self._notify_stateful(method, params)

    def _notify_stateful(self, method: str, params: Optional[Dict[str, Any]]) -> None:
        payload: Message = {"jsonrpc": "2.0", "method": method}
        if params:
            payload["params"] = params
        self._check_notified(self._post(method, payload, self._stateful_headers(), None),
                             method)

    def _check_notified(self, reply: _Reply, method: str) -> None:
        if 200 <= reply.status < 300:
            return
        raise self._reply_error(reply, method)

    def _stateful_headers(self) -> Dict[str, str]:
        headers: Dict[str, str] = {}
        if self._version is not None:
            headers["MCP-Protocol-Version"] = self._version
        if self._session_id is not None:
            headers["Mcp-Session-Id"] = self._session_id
        return headers

    def _envelope(self, version: str) -> Dict[str, Any]:
        capabilities = copy.deepcopy(self._capabilities)
        if self._extensions:
            declared = capabilities.get("extensions")
            merged = dict(declared) if isinstance(declared, dict) else {}
            merged.update(copy.deepcopy(self._extensions))
            capabilities["extensions"] = merged
        return {META_PROTOCOL_VERSION: version,
                META_CLIENT_CAPABILITIES: capabilities,
                META_CLIENT_INFO: copy.deepcopy(self._client_info)}

    def _post_stateless(self, method: str, params: Dict[str, Any],
                        msg_id: Optional[int]) -> _Reply:
        """One self-describing 2026-07-28 POST (SEP-2575 ``_meta``, SEP-2243 headers)."""
        version = self._version or LATEST_PROTOCOL_VERSION
        params = dict(params)
        meta = params.get("_meta")
        merged = dict(meta) if isinstance(meta, dict) else {}
        merged.update(self._envelope(version))
        params["_meta"] = merged
        headers = {"MCP-Protocol-Version": version, "Mcp-Method": method}
        named = _NAMED_METHODS.get(method)
        if named is not None and isinstance(params.get(named), str):
            headers["Mcp-Name"] = _header_value(params[named])
        payload: Message = {"jsonrpc": "2.0", "method": method, "params": params}
        if msg_id is not None:
            payload["id"] = msg_id
        return self._post(method, payload, headers, msg_id)

    # -- HTTP ------------------------------------------------------------------------

    def _post(self, method: str, payload: Message, headers: Dict[str, str],
              msg_id: Optional[int]) -> _Reply:
        """POST one JSON-RPC message and read the reply (JSON or SSE).

        ``msg_id`` None marks a notification or a response sent by the client: then a
        2xx needs no body.
        """
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
        all_headers = dict(self._headers)
        all_headers.update(headers)
        all_headers["Accept"] = _ACCEPT
        all_headers["Content-Type"] = "application/json"
        safe_url = redact_url(self.url)
        try:
            response = self._session.post(self.url, data=body, headers=all_headers,
                                          auth=self._auth, timeout=self.timeout,
                                          stream=True, allow_redirects=False)
        except requests.exceptions.Timeout as exc:
            raise TransportError("MCP {} to {} timed out after {} s".format(
                method, safe_url, self.timeout)) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError("MCP {} to {} failed ({})".format(
                method, safe_url, type(exc).__name__)) from exc
        try:
            logger.debug("MCP %s %s -> HTTP %d", clean_peer_text(method, 200), safe_url,
                         response.status_code)
            return self._read_reply(method, response, msg_id)
        except requests.exceptions.RequestException as exc:
            raise TransportError("MCP {} to {} failed while reading the reply ({})".format(
                method, safe_url, type(exc).__name__)) from exc
        finally:
            response.close()

    def _read_reply(self, method: str, response: Any, msg_id: Optional[int]) -> _Reply:
        status = response.status_code
        headers = response.headers
        safe_url = redact_url(self.url)
        if 300 <= status < 400:
            raise ProtocolError("MCP {} to {} was redirected (HTTP {}) to {}; redirects are "
                                "not followed, configure that URL instead".format(
                                    method, safe_url, status,
                                    clean_peer_text(redact_url(
                                        headers.get("Location") or "nowhere"), 500)),
                                status_code=status)
        challenge = bearer_challenge(headers.get("WWW-Authenticate"))
        params = challenge.params if challenge is not None else {}
        if status == 401:
            raise UnauthorizedError(
                "the MCP server at {} refused the request (HTTP 401){}".format(
                    safe_url, "" if self._auth is not None
                    or getattr(self._session, "auth", None) is not None
                    else "; no auth provider is configured"),
                status_code=401, error=params.get("error"),
                error_description=params.get("error_description"),
                scope=params.get("scope"), resource_metadata=params.get("resource_metadata"))
        if status == 403 and params.get("error") == "insufficient_scope":
            raise InsufficientScopeError(
                "the MCP server at {} requires scope {!r} (HTTP 403 insufficient_scope)"
                .format(safe_url, params.get("scope")),
                required_scope=params.get("scope"),
                error_description=params.get("error_description"),
                resource_metadata=params.get("resource_metadata"))
        media = _media_type(headers)
        what = "the reply to MCP {} from {}".format(method, safe_url)
        if 200 <= status < 300:
            if msg_id is None:
                return _Reply(status, None, headers)
            if media == "application/json":
                return _Reply(status, self._json_reply(response, msg_id, what, status),
                              headers)
            if media == "text/event-stream":
                return _Reply(status, self._sse_reply(response, msg_id, what, status),
                              headers)
            raise ProtocolError("{} has no JSON-RPC response (HTTP {}, {})".format(
                what, status, repr(media[:60]) if media else "no body type"),
                status_code=status)
        # An HTTP error: a JSON-RPC error body is the server's word; anything else is not.
        message = None
        if media == "application/json":
            try:
                value = loads_json(self._read_capped(response, what, status).decode("utf-8"))
            except (ProtocolError, ValueError):
                value = None
            if _kind(value) == "response" and "error" in value:
                message = value
        return _Reply(status, message, headers)

    def _read_capped(self, response: Any, what: str, status: int) -> bytes:
        chunks: List[bytes] = []
        size = 0
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > self.max_response_bytes:
                raise ProtocolError("{} exceeds the {} byte limit".format(
                    what, self.max_response_bytes), status_code=status)
            chunks.append(chunk)
        return b"".join(chunks)

    def _json_reply(self, response: Any, msg_id: int, what: str, status: int) -> Message:
        try:
            value = loads_json(self._read_capped(response, what, status).decode("utf-8"))
        except ValueError:
            raise ProtocolError("{} is not valid JSON (HTTP {})".format(what, status),
                                status_code=status) from None
        found = self._take_messages(value if isinstance(value, list) else [value], msg_id,
                                    what, status)
        if found is None:
            raise ProtocolError("{} is not a JSON-RPC response to request {}".format(
                what, msg_id), status_code=status)
        return found

    def _sse_reply(self, response: Any, msg_id: int, what: str, status: int) -> Message:
        lines = _iter_lines(response.iter_content(_CHUNK), self.max_response_bytes, what,
                            status)
        for event in _iter_sse_events(lines):
            if event.event != "message" or not event.data.strip():
                continue  # another event type, or a priming event without data
            try:
                value = loads_json(event.data)
            except ValueError:
                raise ProtocolError("{}: an SSE event is not JSON".format(what),
                                    status_code=status) from None
            found = self._take_messages(value if isinstance(value, list) else [value],
                                        msg_id, what, status)
            if found is not None:
                return found
        raise ProtocolError("{}: the SSE stream ended without the response to request {}"
                            .format(what, msg_id), status_code=status)

    def _take_messages(self, messages: List[Any], msg_id: int, what: str,
                       status: int) -> Optional[Message]:
        """Deliver notifications, answer server requests, return our response if present."""
        found = None
        for message in messages:
            kind = _kind(message)
            if kind == "invalid":
                raise ProtocolError("{} contains a message that is not JSON-RPC 2.0".format(
                    what), status_code=status)
            if kind == "notification":
                self._deliver(message)
            elif kind == "request":
                self._answer_server_request(message)
            elif _matches(message, msg_id):
                found = message
            else:
                logger.debug("MCP: ignoring a response to another request in %s", what)
        return found

    def _deliver(self, message: Message) -> None:
        # The method name is the server's: cleaned, so it cannot forge a log line.
        logger.debug("MCP notification %s from %s", clean_peer_text(message["method"], 200),
                     redact_url(self.url))
        self.notifications.append(message)
        if self._on_notification is not None:
            self._on_notification(message)

    def _answer_server_request(self, message: Message) -> None:
        method = message["method"]
        shown = clean_peer_text(method, 200)  # the server's string, for the log
        request_id = message.get("id")
        if self._mode != _STATEFUL or not _is_id(request_id):
            logger.debug("MCP: ignoring server request %s from %s", shown,
                         redact_url(self.url))
            return
        answer: Message = {"jsonrpc": "2.0", "id": request_id}
        if method == "ping":
            answer["result"] = {}
        else:
            answer["error"] = {"code": METHOD_NOT_FOUND, "message": "Method not found"}
        logger.debug("MCP: answering server request %s from %s", shown, redact_url(self.url))
        try:
            self._post("response to {}".format(shown), answer, self._stateful_headers(),
                       None)
        except MCPAuthError as exc:
            logger.debug("MCP: answering server request %s failed (%s)", shown,
                         type(exc).__name__)

    def _reply_error(self, reply: _Reply, method: str) -> MCPAuthError:
        """The error a reply without a result stands for: its JSON-RPC error as
        MCPError, else a ProtocolError with the HTTP status."""
        if reply.message is not None and "error" in reply.message:
            return _mcp_error(reply.message["error"], reply.status)
        return ProtocolError("MCP {} to {} failed with HTTP {}".format(
            method, redact_url(self.url), reply.status), status_code=reply.status)

    def _result_of(self, reply: _Reply, method: str) -> Any:
        message = reply.message
        if message is None or "error" in message:
            raise self._reply_error(reply, method)
        return message["result"]
