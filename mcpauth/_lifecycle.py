"""The two MCP lifecycles of MCPClient, and how it tells which one a server speaks.

MCP "Lifecycle", revisions 2024-11-05 to 2026-07-28:

* **Stateful lifecycle** (2024-11-05, 2025-03-26, 2025-06-18, 2025-11-25): ``initialize``
  with ``protocolVersion``, ``capabilities`` and ``clientInfo``, then
  ``notifications/initialized``; ``MCP-Protocol-Version: <negotiated>`` on every later
  request (required since 2025-06-18); an ``Mcp-Session-Id`` the server issues is echoed
  on every later request, a 404 on a request carrying it means the session expired (the
  client initializes again, once), and the session is ended with DELETE on close.
* **Stateless lifecycle** (2026-07-28, SEP-2575 / SEP-2567): no ``initialize`` and no
  session. Every request carries ``params._meta`` with
  ``io.modelcontextprotocol/protocolVersion``, ``.../clientCapabilities`` (declaring the
  auth extension in use) and ``.../clientInfo``, plus the SEP-2243 headers
  ``MCP-Protocol-Version`` (equal to ``_meta``), ``Mcp-Method``, for ``tools/call``,
  ``resources/read`` and ``prompts/get`` ``Mcp-Name``, and for ``tools/call`` the
  ``Mcp-Param-*`` headers of the tool's ``x-mcp-header`` parameters
  (:mod:`mcpauth._headers`; ``Mcp-Method`` is encoded as ``Mcp-Name`` is). An
  ``UnsupportedProtocolVersion`` error (-32022) is retried once with the newest version
  in ``data.supported`` that the client speaks (the same version again when the server
  lists it; a pinned client retries only its pinned one).
* **Version detection** (``protocol_version=None``): the first request goes out on the
  2026-07-28 wire and its reply tells the lifecycle (:func:`lifecycle_of`), so detection
  costs no extra round trip. A legacy answer makes the client ``initialize`` with
  2025-11-25 (once, whatever the number of threads) and send the request again on the
  stateful wire; if that ``initialize`` fails too, the error of the first reply is
  raised and the next request detects again. An answer that tells nothing is raised as
  it is. A -32022 whose ``data.supported`` lists only legacy versions falls back to the
  best of those. :meth:`MCPClient.connect` detects with ``server/discover`` instead, by
  the same rules. The result is kept for the client's lifetime.
"""

import copy
import logging
from typing import Any, Dict, Optional, Tuple

import requests

from ._headers import Bindings, encode_header_value, param_headers
from ._wire import METHOD_NOT_FOUND, Message, Reply, WireMixin, mcp_error
from .errors import MCPAuthError, MCPError, ProtocolError
from .transport import redact_url

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

# JSON-RPC 2.0 §5.1 and MCP 2026-07-28 error codes.
INVALID_PARAMS = -32602
HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

STATELESS = "stateless"
STATEFUL = "stateful"
_NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}


# JSON-RPC codes the pre-2026 transports use to refuse a request they cannot take: the
# TypeScript SDK 1.x sends -32000 ("Bad Request: Unsupported protocol version", "Server
# not initialized", "Mcp-Session-Id header is required"), the Python SDK -32600.
_LEGACY_REFUSAL_CODES = (-32000, -32600)
# Statuses a pre-2026 server gives such a refusal (405: a POST it does not take at all).
_LEGACY_REFUSAL_STATUSES = (400, 404, 405)


def lifecycle_of(reply: Reply) -> Optional[str]:
    """What the reply to a request sent on the 2026-07-28 wire tells of the lifecycle.

    The one rule for lazy detection and :meth:`MCPClient.connect` (MCP 2026-07-28
    "Transports", backwards compatibility: a dual-era client inspects the body of a 400):

    * ``STATELESS`` (a 2026-07-28 server): a 2xx (a result, or an error the server
      chose to send, such as an unknown tool), or an error only a 2026-07-28 server
      sends: -32020, -32021 or -32022 with a 4xx, -32602 with 400, -32601 with 404.
    * ``STATEFUL`` (a pre-2026 server): 400, 404 or 405 whose body is not a JSON-RPC
      error, or is one with code -32000 or -32600.
    * None: nothing is known. 401, 403, 408, 413, 415, 429, 5xx, and any other code:
      the error is the server's answer to the request and is raised as it is.
    """
    status = reply.status
    if 200 <= status < 300:
        return STATELESS
    error = reply.message.get("error") if reply.message is not None else None
    code = error.get("code") if isinstance(error, dict) else None
    if 400 <= status < 500 and code in (HEADER_MISMATCH, MISSING_REQUIRED_CLIENT_CAPABILITY,
                                        UNSUPPORTED_PROTOCOL_VERSION):
        return STATELESS
    if (code, status) in ((INVALID_PARAMS, 400), (METHOD_NOT_FOUND, 404)):
        return STATELESS
    if status in _LEGACY_REFUSAL_STATUSES and (error is None
                                                or code in _LEGACY_REFUSAL_CODES):
        return STATEFUL
    return None


def _visible_ascii(value: str) -> bool:
    # MCP "Session Management": the session ID MUST only contain visible ASCII (0x21-0x7E).
    return bool(value) and all("!" <= ch <= "~" for ch in value)


class LifecycleMixin(WireMixin):
    """Connecting, detecting and sending in either lifecycle; mixed into MCPClient."""

    _pinned: Optional[str]
    _lock: Any
    _capabilities: Dict[str, Any]
    _client_info: Dict[str, Any]
    _extensions: Dict[str, Any]
    _mode: Optional[str]
    _version: Optional[str]
    _session_id: Optional[str]
    _server_info: Optional[Dict[str, Any]]
    _server_capabilities: Optional[Dict[str, Any]]
    _instructions: Optional[str]
    _connected: bool
    _detecting: bool
    _tool_bindings: Dict[str, Bindings]

    def _next_id(self) -> int:
        raise NotImplementedError

    def _stateful(self) -> bool:
        return self._mode == STATEFUL

    def _connect(self, explicit: bool) -> None:
        pinned = self._pinned
        if pinned in STATEFUL_PROTOCOL_VERSIONS:
            self._initialize(pinned)
        elif pinned is not None:
            self._mode, self._version = STATELESS, pinned
            if explicit:
                self._discover(probe=False)
        elif explicit:
            self._mode, self._version = STATELESS, LATEST_PROTOCOL_VERSION
            self._discover(probe=True)
        else:
            # Detect lazily: the first real request goes out on the 2026-07-28 wire and
            # its answer tells the lifecycle, so a warm cron run costs one request, not a
            # server/discover probe plus the call.
            self._mode, self._version = STATELESS, LATEST_PROTOCOL_VERSION
            self._detecting = True
        self._connected = True

    def _discover(self, probe: bool, retried: bool = False) -> None:
        """``server/discover`` on the stateless wire; with ``probe``, detect a legacy
        server from the answer (a dual-era client inspects the body of a 400) and fall
        back to ``initialize``. The answer is classified by :func:`lifecycle_of`, as the
        first request of lazy detection is."""
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
            if choice in STATELESS_PROTOCOL_VERSIONS:
                self._version = choice
                return self._discover(probe, retried=True)
            if choice in STATEFUL_PROTOCOL_VERSIONS and probe:
                logger.debug("MCP server %s offers only stateful versions; using %s",
                             redact_url(self.url), choice)
                return self._initialize(choice, fallback_from=(reply, "server/discover"))
            raise mcp_error(error, reply.status)
        lifecycle = lifecycle_of(reply)
        if lifecycle == STATELESS and code == METHOD_NOT_FOUND:
            return  # a 2026-07-28 server without server/discover: still modern
        if probe and lifecycle == STATEFUL:
            logger.debug("MCP server %s is not a 2026-07-28 server (HTTP %d); falling back "
                         "to initialize", redact_url(self.url), reply.status)
            return self._initialize(LEGACY_PROTOCOL_VERSION,
                                    fallback_from=(reply, "server/discover"))
        raise self._reply_error(reply, "server/discover")

    def _choose_version(self, data: Any) -> Optional[str]:
        """The version to retry with after -32022 (SEP-2575): the newest one in
        ``data.supported`` that this client speaks, preferring another than the one
        just refused; the refused one itself when the server lists it and nothing else
        (its refusal then was not about the version). A pinned client only ever retries
        its pinned version."""
        supported = data.get("supported") if isinstance(data, dict) else None
        if not isinstance(supported, list):
            return None
        if self._pinned is not None:
            return self._pinned if self._pinned in supported else None
        for version in SUPPORTED_PROTOCOL_VERSIONS:
            if version in supported and version != self._version:
                return version
        return self._version if self._version in supported else None

    def _initialize(self, version: str,
                    fallback_from: Optional[Tuple[Reply, str]] = None) -> None:
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
        self._mode, self._version, self._session_id = STATEFUL, negotiated, session_id
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

    def _fell_back(self, reply: Reply, method: str) -> bool:
        """End detection with the reply to a first request sent on the 2026-07-28 wire.

        :func:`lifecycle_of` classifies it. A legacy answer makes the client
        ``initialize`` (one thread does it, the others wait on the lock and find it
        done). True when the request must be sent again on the stateful wire; False
        when the reply stands: a modern server, or an answer that tells nothing (401,
        403, 413, 429, 5xx, ...), after which the next request detects again. If the
        fallback ``initialize`` fails, the error of ``reply`` is raised and detection
        goes on.
        """
        lifecycle = lifecycle_of(reply)
        if lifecycle is None:
            return False
        if lifecycle == STATELESS:
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
                    if self._mode == STATEFUL:
                        self._detecting = False
            return self._mode == STATEFUL

    def _request(self, method: str, params: Dict[str, Any], retried: bool = False) -> Any:
        # Read before the mode: a thread that finds detection over finds the mode it
        # settled; one that finds it running sends on the 2026-07-28 wire and lets
        # _fell_back settle the reply (another thread may have initialized meanwhile).
        detecting = self._detecting
        if self._mode == STATELESS:
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
            if self._mode != STATELESS or self._version != refused:
                return True  # another thread switched already
            choice = self._choose_version(data)
            if choice in STATELESS_PROTOCOL_VERSIONS:
                self._version = choice
                return True
            if choice in STATEFUL_PROTOCOL_VERSIONS and self._pinned is None:
                self._initialize(choice)
                return True
            return False

    def _note_server_info(self, reply: Reply) -> None:
        """Keep the ``_meta`` serverInfo a 2026-07-28 result carries (servers SHOULD send
        it on every result), so a client that never sent server/discover knows it too."""
        result = reply.message.get("result") if reply.message is not None else None
        meta = result.get("_meta") if isinstance(result, dict) else None
        info = meta.get(META_SERVER_INFO) if isinstance(meta, dict) else None
        if isinstance(info, dict):
            self._server_info = info

    def _notify(self, method: str, params: Dict[str, Any]) -> None:
        detecting = self._detecting  # before the mode, as in _request
        if self._mode == STATELESS:
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

    def _check_notified(self, reply: Reply, method: str) -> None:
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
                        msg_id: Optional[int]) -> Reply:
        """One self-describing 2026-07-28 POST (SEP-2575 ``_meta``, SEP-2243 headers)."""
        version = self._version or LATEST_PROTOCOL_VERSION
        params = dict(params)
        meta = params.get("_meta")
        merged = dict(meta) if isinstance(meta, dict) else {}
        merged.update(self._envelope(version))
        params["_meta"] = merged
        # The method is the caller's text: encoded as Mcp-Name is, so that no text can
        # add a header line or fail inside http.client.
        headers = {"MCP-Protocol-Version": version, "Mcp-Method": encode_header_value(method)}
        named = _NAMED_METHODS.get(method)
        if named is not None and isinstance(params.get(named), str):
            headers["Mcp-Name"] = encode_header_value(params[named])
        tool = params.get("name")
        arguments = params.get("arguments")
        if method == "tools/call" and isinstance(tool, str) and isinstance(arguments, dict):
            bindings = self._tool_bindings.get(tool)
            if bindings:
                headers.update(param_headers(bindings, arguments))
        payload: Message = {"jsonrpc": "2.0", "method": method, "params": params}
        if msg_id is not None:
            payload["id"] = msg_id
        return self._post(method, payload, headers, msg_id)
