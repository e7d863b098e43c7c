"""A small synchronous MCP client over Streamable HTTP, for both MCP lifecycles.

:class:`MCPClient` is the public face; the work is split by concern:

* :mod:`mcpauth._lifecycle`: the stateful (``initialize``) and stateless (2026-07-28)
  lifecycles, and how the client tells which one a server speaks;
* :mod:`mcpauth._wire`: one JSON-RPC message over HTTP and its JSON or SSE reply,
  resuming closed SSE streams, and the per-call deadline and byte caps;
* :mod:`mcpauth._sse`: server-sent events parsing;
* :mod:`mcpauth._headers`: the SEP-2243 ``Mcp-Name`` and ``Mcp-Param-*`` headers.

JSON-RPC 2.0 §5: an ``error`` member raises :class:`~mcpauth.errors.MCPError` (``code``,
``message``, ``data``); a tool result with ``isError`` is returned, not raised.

Authorization is not this module's business: ``auth`` is any ``requests`` auth object,
normally an mcpauth provider, which adds the ``Authorization`` header, answers 401 and
403 ``insufficient_scope`` challenges and replays the request. The client never reads,
sets or logs a token. Redirects are not followed (a 3xx raises ProtocolError naming the
target), so a credentialed POST is never re-sent somewhere else.
"""

import collections
import contextlib
import copy
import itertools
import logging
import threading
from typing import (Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Union)

import requests

from . import _fork
from ._headers import header_bindings
from ._lifecycle import (
    HEADER_MISMATCH,
    LATEST_PROTOCOL_VERSION,
    LEGACY_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    STATEFUL,
    STATELESS,
    STATELESS_PROTOCOL_VERSIONS,
    STATEFUL_PROTOCOL_VERSIONS,
    SUPPORTED_PROTOCOL_VERSIONS,
    LifecycleMixin,
)
from . import __version__
from ._wire import Message
from .errors import ConfigurationError, MCPAuthError, MCPError, ProtocolError, clean_peer_text
from .transport import check_url, redact_url

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
    "DEFAULT_CALL_TIMEOUT",
]

logger = logging.getLogger("mcpauth")

EXTENSION_OAUTH_CLIENT_CREDENTIALS = "io.modelcontextprotocol/oauth-client-credentials"
EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION = (
    "io.modelcontextprotocol/enterprise-managed-authorization")

#: Seconds to wait for the connection and between bytes of a reply.
DEFAULT_TIMEOUT = 60.0
#: Seconds one public call (request, notify, connect, list_tools with all its pages,
#: call_tool) may take in all, however the server trickles its replies.
DEFAULT_CALL_TIMEOUT = 300.0
#: Largest reply (JSON body or whole SSE stream) read for one request: 16 MiB.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Notifications kept in :attr:`MCPClient.notifications`.
NOTIFICATIONS_KEPT = 100
#: Pages :meth:`MCPClient.list_tools` follows before it gives up.
MAX_PAGES = 1000

_RESERVED_HEADERS = frozenset([
    "authorization", "accept", "content-type", "mcp-protocol-version", "mcp-method",
    "mcp-name", "mcp-session-id", "last-event-id"])
_LIFECYCLE_METHODS = frozenset(["initialize", "notifications/initialized"])


class MCPClient(LifecycleMixin):
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
        call_timeout: seconds one call may take in all (default
            :data:`DEFAULT_CALL_TIMEOUT`, 300): the deadline of each :meth:`request`,
            :meth:`notify`, :meth:`connect`, :meth:`list_tools` (all its pages) and
            :meth:`call_tool`, with every HTTP exchange in it (a lifecycle fallback, a
            resumed SSE stream). SSE keep-alive comments and slow bytes do not extend
            it; past it the call raises TransportError. The auth provider's own
            discovery and token requests are bounded by the provider's ``timeout``,
            not by this deadline.
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
                 call_timeout: float = DEFAULT_CALL_TIMEOUT,
                 headers: Optional[Mapping[str, str]] = None,
                 on_notification: Optional[Callable[[Message], None]] = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 allow_insecure_http: bool = False) -> None:
        check_url(url, allow_insecure_http, "MCP server")
        if protocol_version is not None and protocol_version not in SUPPORTED_PROTOCOL_VERSIONS:
            raise ConfigurationError("protocol_version must be one of {} (or None to detect)"
                                     .format(", ".join(SUPPORTED_PROTOCOL_VERSIONS)))
        for label, value in (("timeout", timeout), ("call_timeout", call_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 < value < float("inf"):
                raise ConfigurationError("{} must be a positive number of seconds".format(
                    label))
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
            if name.lower() in _RESERVED_HEADERS or name.lower().startswith("mcp-param-"):
                raise ConfigurationError(
                    "headers must not set {}: the client or the auth provider does".format(
                        name))
        self.url = url
        self.timeout = float(timeout)
        self.call_timeout = float(call_timeout)
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
        self._local = threading.local()  # the CallLimits of the call on each thread
        # SEP-2243: x-mcp-header bindings of the tools listed so far, and the tools
        # excluded for an invalid declaration (name -> reason).
        self._tool_bindings: Dict[str, Any] = {}
        self._excluded_tools: Dict[str, str] = {}
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
        _fork.register(self)

    def _after_fork(self) -> None:
        # In a forked child: new locks (a parent's thread may hold the old ones during a
        # handshake), and a connection pool of its own when the session is ours.
        self._lock = threading.RLock()
        self._ids_lock = threading.Lock()
        if self._owns_session:
            self._session = requests.Session()

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

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        """One public call: its deadline covers everything done inside (nested public
        calls share the outer one)."""
        if getattr(self._local, "limits", None) is not None:
            yield
            return
        self._local.limits = self._limits()  # none set yet: a new one
        try:
            yield
        finally:
            self._local.limits = None

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
        _fork.check()
        with self._call(), self._lock:
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
        with self._call():
            return self._request(method, self._prepare(method, params))

    def notify(self, method: str, params: Optional[Mapping[str, Any]] = None) -> None:
        """Send a JSON-RPC notification (no reply is expected; the server answers 202).

        Raises:
            MCPError, ProtocolError, TransportError: as :meth:`request`.
        """
        with self._call():
            self._notify(method, self._prepare(method, params))

    def list_tools(self) -> List[Dict[str, Any]]:
        """All tools of the server, following ``nextCursor`` across pages.

        The tool objects are returned exactly as the server sent them (``inputSchema``
        and ``outputSchema`` with ``$schema``, ``$defs``, ``$ref``, composition and
        conditional keywords untouched; no ``$ref`` is dereferenced or fetched).

        On the 2026-07-28 wire the client also learns each tool's ``x-mcp-header``
        parameters, which :meth:`call_tool` mirrors into ``Mcp-Param-*`` headers
        (SEP-2243). A tool whose declarations are invalid (not an HTTP token, a
        duplicate, on a non-primitive or ``number`` property, or not reachable through
        ``properties``) is left out of the list, as the specification requires, with a
        warning naming the tool and the reason.

        Returns:
            The tool objects (``name``, ``description``, ``inputSchema``, ...).

        Raises:
            ProtocolError: a page without a ``tools`` list, a repeated cursor, or more
                than :data:`MAX_PAGES` pages.
            MCPError, TransportError: as :meth:`request`.
        """
        with self._call():  # one deadline for every page
            return self._list_tools()

    def _list_tools(self) -> List[Dict[str, Any]]:
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
            tools.extend(self._learn_tools(page))
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
        params = {"name": name, "arguments": dict(arguments or {})}
        with self._call():
            if name in self._excluded_tools:
                raise ProtocolError("tool {!r} of {} is excluded: {}".format(
                    name, redact_url(self.url), self._excluded_tools[name]))
            known = name in self._tool_bindings
            try:
                result = self.request("tools/call", params)
            except MCPError as exc:
                # SEP-2243: a server that checks Mcp-Param-* headers refuses a call whose
                # tool this client has not listed yet (it sent none). Learn the tool's
                # x-mcp-header parameters and send the call again, once.
                if exc.code != HEADER_MISMATCH or known or self._mode != STATELESS:
                    raise
                logger.debug("MCP tools/call %s refused with a header mismatch; listing "
                             "tools to learn its x-mcp-header parameters",
                             redact_url(self.url))
                try:
                    self.list_tools()
                except MCPAuthError as listing:
                    raise exc from listing
                if name in self._excluded_tools or not self._tool_bindings.get(name):
                    raise
                result = self.request("tools/call", params)
        if not isinstance(result, dict):
            raise ProtocolError("tools/call from {} did not return an object".format(
                redact_url(self.url)))
        return result

    def _learn_tools(self, page: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Record the x-mcp-header bindings of a tools/list page (2026-07-28 wire) and
        return the tools a client may use."""
        if self._mode != STATELESS:
            return page
        usable = []
        for tool in page:
            name = tool.get("name")
            if not isinstance(name, str):
                usable.append(tool)
                continue
            bindings, problem = header_bindings(tool.get("inputSchema"))
            if bindings is None:
                reason = problem or "invalid x-mcp-header"
                self._excluded_tools[name] = reason
                self._tool_bindings.pop(name, None)
                logger.warning("MCP server %s: tool %s left out: %s", redact_url(self.url),
                               clean_peer_text(name, 200), clean_peer_text(reason, 300))
                continue
            self._excluded_tools.pop(name, None)
            self._tool_bindings[name] = bindings
            usable.append(tool)
        return usable

    def close(self) -> None:
        """End the session and release connections. Idempotent.

        In the stateful lifecycle an issued ``Mcp-Session-Id`` is ended with DELETE (a
        405 means the server does not allow that, which is fine). Failures are logged,
        not raised. A session the client created is closed; a given one is left open.
        """
        _fork.check()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session_id = self._session_id if self._mode == STATEFUL else None
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
        _fork.check()
        if self._connected:
            self._check_open()
            return
        with self._lock:
            self._check_open()
            if not self._connected:
                self._connect(explicit=False)

