"""A loopback protected MCP server, for tests (stdlib only).

It is an OAuth resource server in front of a small MCP server over Streamable HTTP:

* RFC 9728 §3 Protected Resource Metadata at the path-based, root or a custom location.
* RFC 6750 §2.1 / §3: every request to the MCP endpoint needs ``Authorization: Bearer``;
  an unknown, expired or wrong-resource token (MCP "Token Audience Binding", RFC 8707)
  gets 401 with ``WWW-Authenticate: Bearer error="invalid_token",
  error_description="...", resource_metadata="<PRM URL>"`` (RFC 9728 §5.1); a request
  with no ``Authorization`` gets ``Bearer resource_metadata="<PRM URL>"`` without an
  error code (RFC 6750 §3.1: "If the request lacks any authentication information
  ..., the resource server SHOULD NOT include an error code"), and a token
  without the required scope gets 403 ``error="insufficient_scope"`` (RFC 6750 §3.1,
  MCP "Scope Challenge Handling").
* JSON-RPC 2.0 in both MCP lifecycles:

  - **stateful** (2025-03-26, 2025-06-18, 2025-11-25): ``initialize`` negotiates a
    version (the requested one if supported, else the latest), optional
    ``Mcp-Session-Id`` (``sessions=True``; then required, and DELETE ends it),
    ``notifications/initialized`` -> 202, then ``MCP-Protocol-Version`` must equal the
    negotiated version. Without sessions the server remembers the most recent
    negotiation (one client at a time; ``strict_protocol_version_header=False`` relaxes).
    Errors mimic the TypeScript SDK transport (code -32000 ``Bad Request: ...``).
  - **stateless** (2026-07-28, SEP-2575 / SEP-2243): no ``initialize`` (404 -32601);
    every request carries ``params._meta`` protocolVersion and clientCapabilities
    (else 400 -32602), ``MCP-Protocol-Version`` equal to it (else 400 -32020),
    ``Mcp-Method`` equal to the method and ``Mcp-Name`` equal to ``params.name`` for
    ``tools/call`` (else 400 -32020); an unsupported version gets 400 -32022 with
    ``data: {supported, requested}``. Results carry ``"resultType": "complete"``, and
    list results (``tools/list``, ``server/discover``) the SEP-2549 ``ttlMs`` and
    ``cacheScope`` that 2026-07-28 clients require. A tool whose ``inputSchema``
    properties carry ``"x-mcp-header": "Name"`` (reachable through ``properties``) must be
    called with a matching ``Mcp-Param-Name`` header (the SEP-2243 ``=?base64?...?=``
    form decoded; integers in decimal, booleans ``true``/``false``) and without one when
    the argument is null or absent; else 400 -32020.

  A request is handled statelessly when it carries a non-legacy ``MCP-Protocol-Version``
  or ``_meta`` protocolVersion without a legacy header (or always, with
  ``stateless_only=True``). ``legacy_only=True`` is a pre-2026 server: a stateless-style
  request gets the TS SDK's answer, 400 ``-32000 Bad Request: Unsupported protocol
  version`` (or ``Server not initialized`` / ``Mcp-Session-Id header is required`` with
  sessions), never a -32022.

* POSTs need ``Content-Type: application/json`` (else 415) and an ``Accept`` naming both
  ``application/json`` and ``text/event-stream`` (else 406). Replies are JSON or, with
  ``response_mode="sse"``, one SSE stream per request (optional ``notifications/message``
  events first). Built-in tools: ``echo``, ``add``, ``whoami``, ``fail``; add more with
  :meth:`MCPServer.add_tool`.
* SSE stream knobs: ``sse_close_early = N`` closes the stream of a stateful request N
  times after a priming event (``id`` and ``retry: sse_retry_ms``) before the reply,
  which a ``GET`` with that ``Last-Event-ID`` resumes ("Resumability and Redelivery";
  any other GET gets 405); ``sse_keepalive_forever = seconds`` answers every request
  with an SSE stream of ``: keepalive`` comments at that interval and never a reply.

Loopback only: it binds ``127.0.0.1``.
"""

import base64
import binascii
import itertools
import json
import secrets
import time
from collections import OrderedDict
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)

from ..dpop import DPoPProofError
from ._http import LoopbackServer, RecordedRequest, Response, is_json_media, not_found
from .dpop import DPoPChecker

__all__ = [
    "LEGACY_VERSIONS",
    "MCPServer",
    "META_CLIENT_CAPABILITIES",
    "META_CLIENT_INFO",
    "META_PROTOCOL_VERSION",
    "META_SERVER_INFO",
    "STATELESS_VERSIONS",
]

LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
STATELESS_VERSIONS = ("2026-07-28",)
META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

# JSON-RPC / MCP error codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
TS_BAD_REQUEST = -32000
TS_SESSION_NOT_FOUND = -32001
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022

_NAMED_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
# SEP-2549: how long (and for whom) a 2026-07-28 list result may be cached.
_LIST_CACHE = {"ttlMs": 0, "cacheScope": "private"}

TokenInfo = Dict[str, Any]
ToolHandler = Callable[[Dict[str, Any], TokenInfo], Any]


class _RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None, status: int = 200,
                 msg_id: Any = None) -> None:
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status
        self.msg_id = msg_id


def _decode_header_value(value: str) -> str:
    """Undo the SEP-2243 ``=?base64?...?=`` sentinel encoding of non-ASCII values."""
    if value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2].encode("ascii"),
                                    validate=True).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeError):
            return value
    return value


def _declared_headers(schema: Any, path: Tuple[str, ...] = ()
                      ) -> List[Tuple[Tuple[str, ...], str]]:
    """``(argument path, header name)`` of the ``x-mcp-header`` properties reachable
    from the schema root through ``properties`` (SEP-2243)."""
    found: List[Tuple[Tuple[str, ...], str]] = []
    props = schema.get("properties") if isinstance(schema, dict) else None
    for key, sub in (props.items() if isinstance(props, dict) else []):
        if isinstance(sub, dict) and isinstance(sub.get("x-mcp-header"), str):
            found.append((path + (key,), sub["x-mcp-header"]))
        found.extend(_declared_headers(sub, path + (key,)))
    return found


def _header_text(value: Any) -> Optional[str]:
    """The text an ``Mcp-Param-*`` header must carry for an argument, None for none."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _tool_echo(arguments: Dict[str, Any], token: TokenInfo) -> Any:
    return json.dumps(arguments, sort_keys=True)


def _tool_add(arguments: Dict[str, Any], token: TokenInfo) -> Any:
    a, b = arguments.get("a"), arguments.get("b")
    for value in (a, b):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("add needs numeric a and b")
    total = a + b  # type: ignore
    return {"content": [{"type": "text", "text": str(total)}],
            "structuredContent": {"result": total}}


def _tool_whoami(arguments: Dict[str, Any], token: TokenInfo) -> Any:
    who = {"client_id": token.get("client_id"), "scope": token.get("scope", ""),
           "sub": token.get("sub")}
    return {"content": [{"type": "text", "text": json.dumps(who, sort_keys=True)}],
            "structuredContent": who}


def _tool_fail(arguments: Dict[str, Any], token: TokenInfo) -> Any:
    return {"content": [{"type": "text", "text": "tool failed"}], "isError": True}


class MCPServer(LoopbackServer):
    """A loopback MCP server protected by OAuth bearer tokens.

    Args:
        path: the MCP endpoint path.
        authorization_servers: issuers (str) or :class:`AuthorizationServer` objects;
            listed in the PRM, and the objects' in-process :meth:`introspect` validates
            tokens unless ``token_validator`` is given.
        resource: the PRM ``resource`` and the resource tokens must be bound to
            (default: the exact MCP endpoint URL).
        scopes_supported: PRM ``scopes_supported``.
        required_scope: space-separated scopes needed for the methods in
            ``scope_required_for`` (default ``tools/call``); else 403.
        challenge_scope: ``scope`` parameter put in 401 challenges.
        include_resource_metadata_in_challenge: add ``resource_metadata`` to challenges.
        prm_location: ``"path"`` (``/.well-known/oauth-protected-resource{path}``),
            ``"root"`` or ``"custom"`` (``prm_path``).
        prm_path: the custom PRM path.
        token_validator: ``callable(token) -> dict or None`` (dict like
            ``AuthorizationServer.introspect``).
        static_tokens: tokens always accepted (an iterable, or a mapping token ->
            scope string), for bring-your-own-token tests.
        sessions: issue and require ``Mcp-Session-Id`` (stateful lifecycle).
        stateless_only: a 2026-07-28-only server (``initialize`` is 404 -32601).
        legacy_only: a pre-2026 server (never handles a request statelessly).
        response_mode: ``"json"`` or ``"sse"``.
        sse_notifications: ``notifications/message`` events sent before each SSE reply.
        page_size: ``tools/list`` page size (None: one page).
        require_resource_binding: refuse tokens minted without a ``resource``.

    Knobs (attributes): ``prm_override`` (None value removes a member),
    ``challenge_resource_metadata`` (URL advertised instead of the PRM URL),
    ``bare_challenge_when_missing`` (default True, RFC 6750 §3.1: no ``error`` when there
    was no token; False answers ``error="invalid_token"`` as some servers do anyway),
    ``strict_protocol_version_header``, ``sse_priming_event``; failures via
    :meth:`fail_next`; any canned response via :meth:`set_route`.
    """

    def __init__(self, *, path: str = "/mcp",
                 authorization_servers: Sequence[Any] = (),
                 resource: Optional[str] = None,
                 scopes_supported: Optional[Sequence[str]] = None,
                 required_scope: Optional[str] = None,
                 scope_required_for: Sequence[str] = ("tools/call",),
                 challenge_scope: Optional[str] = None,
                 include_resource_metadata_in_challenge: bool = True,
                 prm_location: str = "path",
                 prm_path: str = "/custom/metadata/location.json",
                 token_validator: Optional[Callable[[str], Optional[TokenInfo]]] = None,
                 static_tokens: Union[Iterable[str], Mapping[str, str]] = (),
                 sessions: bool = False,
                 stateless_only: bool = False,
                 legacy_only: bool = False,
                 response_mode: str = "json",
                 sse_notifications: int = 0,
                 page_size: Optional[int] = None,
                 require_resource_binding: bool = False,
                 legacy_versions: Sequence[str] = LEGACY_VERSIONS,
                 stateless_versions: Sequence[str] = STATELESS_VERSIONS,
                 server_name: str = "mcpauth-test-server") -> None:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        if prm_location not in ("path", "root", "custom"):
            raise ValueError("prm_location must be 'path', 'root' or 'custom'")
        if response_mode not in ("json", "sse"):
            raise ValueError("response_mode must be 'json' or 'sse'")
        if stateless_only and legacy_only:
            raise ValueError("stateless_only and legacy_only exclude each other")
        LoopbackServer.__init__(self)
        self.path = path
        self.authorization_servers = list(authorization_servers)
        self._resource = resource
        self.scopes_supported = None if scopes_supported is None else list(scopes_supported)
        self.required_scope = required_scope
        self.scope_required_for = list(scope_required_for)
        self.challenge_scope = challenge_scope
        self.include_resource_metadata_in_challenge = include_resource_metadata_in_challenge
        self.prm_location = prm_location
        self._custom_prm_path = prm_path
        self.token_validator = token_validator
        if isinstance(static_tokens, Mapping):
            self.static_tokens: Dict[str, str] = dict(static_tokens)
        else:
            self.static_tokens = dict((t, "") for t in static_tokens)
        self.sessions_enabled = sessions
        self.stateless_only = stateless_only
        self.legacy_only = legacy_only
        self.response_mode = response_mode
        self.sse_notifications = sse_notifications
        self.page_size = page_size
        self.require_resource_binding = require_resource_binding
        self.legacy_versions = list(legacy_versions)
        self.stateless_versions = list(stateless_versions)
        self.server_info = {"name": server_name, "version": "0.0.0"}
        # knobs
        self.prm_override: Dict[str, Any] = {}
        self.challenge_resource_metadata: Optional[str] = None
        self.bare_challenge_when_missing = True
        self.strict_protocol_version_header = True
        self.sse_priming_event = False
        self.sse_close_early = 0
        self.sse_retry_ms = 100
        self.sse_keepalive_forever: Optional[float] = None
        # DPoP (RFC 9449 §7): DPoP-scheme requests are checked by self.dpop (set its
        # nonce / rotate_nonce knobs); a DPoP-bound token sent as Bearer is refused.
        self.dpop = DPoPChecker()
        # state (guarded by self._lock)
        self._tools: Dict[str, Tuple[Dict[str, Any], ToolHandler]] = OrderedDict()
        self._sessions: Dict[str, Dict[str, Any]] = {}
        self._negotiated: Optional[str] = None
        self._ever_initialized = False
        self._failures: List[Tuple[int, Optional[str], Optional[str]]] = []
        # Replies held back by sse_close_early: event id -> (payload, closes left).
        self._parked: Dict[str, Tuple[Dict[str, Any], int]] = {}
        self._event_ids = itertools.count(1)
        self._install_builtin_tools()

    def __repr__(self) -> str:
        return "MCPServer(url=%r)" % self.url

    # -- URLs --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The MCP endpoint URL, ``http://127.0.0.1:PORT{path}``."""
        return self.base_url + self.path

    @property
    def resource(self) -> str:
        """The protected resource identifier (RFC 9728 ``resource``)."""
        return self._resource if self._resource is not None else self.url

    @resource.setter
    def resource(self, value: Optional[str]) -> None:
        self._resource = value

    @property
    def prm_path(self) -> str:
        """The path serving the Protected Resource Metadata."""
        if self.prm_location == "path":
            return "/.well-known/oauth-protected-resource" + self.path
        if self.prm_location == "root":
            return "/.well-known/oauth-protected-resource"
        return self._custom_prm_path

    @property
    def prm_url(self) -> str:
        """Absolute URL of the Protected Resource Metadata."""
        return self.base_url + self.prm_path

    def _issuers(self) -> List[str]:
        out = []
        for item in self.authorization_servers:
            out.append(item if isinstance(item, str) else str(item.issuer))
        return out

    def protected_resource_metadata(self) -> Dict[str, Any]:
        """The RFC 9728 §2 document served (after ``prm_override``)."""
        doc: Dict[str, Any] = {"resource": self.resource,
                               "authorization_servers": self._issuers(),
                               "bearer_methods_supported": ["header"]}
        if self.scopes_supported is not None:
            doc["scopes_supported"] = list(self.scopes_supported)
        for key, value in dict(self.prm_override).items():
            if value is None:
                doc.pop(key, None)
            else:
                doc[key] = value
        return doc

    # -- tools -------------------------------------------------------------------------

    def _install_builtin_tools(self) -> None:
        obj: Dict[str, Any] = {"type": "object"}
        self.add_tool("echo", _tool_echo, "Returns its arguments as JSON text.",
                      {"type": "object", "additionalProperties": True})
        self.add_tool("add", _tool_add, "Adds two numbers a and b.",
                      {"type": "object", "properties": {"a": {"type": "number"},
                                                        "b": {"type": "number"}},
                       "required": ["a", "b"]})
        self.add_tool("whoami", _tool_whoami, "Returns the client_id and scope of the token.",
                      obj)
        self.add_tool("fail", _tool_fail, "Always returns a tool error (isError).", obj)

    def add_tool(self, name: str, handler: ToolHandler, description: str = "",
                 input_schema: Optional[Dict[str, Any]] = None) -> None:
        """Add (or replace) a tool.

        Args:
            name: the tool name.
            handler: ``handler(arguments, token_info)``; returns a CallToolResult dict
                (with ``content``), a str (one text item) or any JSON value (as text).
                ValueError becomes JSON-RPC -32602; other exceptions an ``isError``
                result.
            description: the tool description.
            input_schema: JSON Schema of the arguments (default ``{"type": "object"}``).
        """
        definition = {"name": name, "description": description,
                      "inputSchema": input_schema or {"type": "object"}}
        with self._lock:
            self._tools[name] = (definition, handler)

    def remove_tool(self, name: str) -> None:
        """Remove a tool (no error if absent)."""
        with self._lock:
            self._tools.pop(name, None)

    # -- failure injection / inspection -----------------------------------------------------

    def fail_next(self, status: int = 401, count: int = 1, error: Optional[str] = None,
                  scope: Optional[str] = None) -> None:
        """Refuse the next ``count`` MCP-endpoint requests, whatever their token.

        Args:
            status: 401 (``invalid_token`` challenge), 403 (``insufficient_scope``
                challenge with ``scope`` or ``required_scope``) or any other status
                (a JSON error body).
            count: how many requests.
            error: override the ``error`` code.
            scope: the challenged scope.
        """
        with self._lock:
            for _ in range(count):
                self._failures.append((status, error, scope))

    @property
    def sessions(self) -> Dict[str, Dict[str, Any]]:
        """Live sessions: id -> ``{"version", "initialized"}`` (a copy)."""
        with self._lock:
            return dict((k, dict(v)) for k, v in self._sessions.items())

    def mcp_requests(self) -> List[RecordedRequest]:
        """Recorded requests to the MCP endpoint."""
        return self.requests_to(self.path)

    def prm_requests(self) -> List[RecordedRequest]:
        """Recorded requests for the PRM document."""
        return self.requests_to(self.prm_path)

    def calls(self, method: Optional[str] = None) -> List[RecordedRequest]:
        """Authenticated JSON-RPC messages received (optionally one method only)."""
        return [r for r in self.mcp_requests() if "jsonrpc_method" in r.info
                and (method is None or r.info["jsonrpc_method"] == method)]

    # -- challenges --------------------------------------------------------------------------

    def challenge(self, error: Optional[str], description: Optional[str] = None,
                  scope: Optional[str] = None) -> str:
        """Build a ``WWW-Authenticate: Bearer`` value (RFC 6750 §3, RFC 9728 §5.1)."""
        params = []
        if error:
            params.append('error="%s"' % error)
        if description:
            params.append('error_description="%s"' % description)
        if scope:
            params.append('scope="%s"' % scope)
        if self.include_resource_metadata_in_challenge:
            target = self.challenge_resource_metadata or self.prm_url
            params.append('resource_metadata="%s"' % target)
        return "Bearer " + ", ".join(params) if params else "Bearer"

    def _unauthorized(self, description: str, missing: bool = False) -> Response:
        error = None if (missing and self.bare_challenge_when_missing) else "invalid_token"
        header = self.challenge(error, None if error is None else description,
                                self.challenge_scope)
        body = {"error_description": description}
        if error is not None:
            body["error"] = error
        return Response.json(401, body, [("WWW-Authenticate", header)])

    def _forbidden(self, scope: Optional[str], error: str = "insufficient_scope") -> Response:
        description = "The token lacks the required scope"
        header = self.challenge(error, description, scope)
        return Response.json(403, {"error": error, "error_description": description},
                             [("WWW-Authenticate", header)])

    # -- request handling --------------------------------------------------------------------

    def handle(self, record: RecordedRequest) -> Response:
        path = record.url_path
        if path == self.prm_path:
            if record.method != "GET":
                return Response.json(405, {"error": "method_not_allowed"}, [("Allow", "GET")])
            return Response.json(200, self.protected_resource_metadata())
        if path != self.path:
            return not_found()
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            record.info["injected"] = True
            status, error, scope = failure
            if status == 401:
                header = self.challenge(error or "invalid_token", "injected failure",
                                        scope or self.challenge_scope)
                return Response.json(401, {"error": error or "invalid_token"},
                                     [("WWW-Authenticate", header)])
            if status == 403:
                return self._forbidden(scope or self.required_scope,
                                       error or "insufficient_scope")
            return Response.json(status, {"error": error or "server_error"})
        token_info, refusal = self._authenticate(record)
        if refusal is not None:
            return refusal
        assert token_info is not None
        record.info["token_info"] = dict(
            (k, token_info.get(k)) for k in ("client_id", "scope", "sub", "resource"))
        return self._mcp(record, token_info)

    def _validate(self, token: str) -> Optional[TokenInfo]:
        if token in self.static_tokens:
            scope = self.static_tokens[token]
            return {"client_id": None, "scope": scope, "scopes": set(scope.split()),
                    "resource": None, "sub": None, "static": True}
        if self.token_validator is not None:
            custom = self.token_validator(token)
            return None if custom is None else dict(custom)
        for server in self.authorization_servers:
            introspect = getattr(server, "introspect", None)
            if introspect is not None:
                info = introspect(token)
                if info is not None:
                    return dict(info)
        return None

    def _authenticate(self, record: RecordedRequest
                      ) -> Tuple[Optional[TokenInfo], Optional[Response]]:
        authz = record.headers.get("Authorization")
        if authz is None:
            return None, self._unauthorized("Missing Authorization header", missing=True)
        scheme, _, token = authz.partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "dpop") or not token:
            return None, self._unauthorized("Invalid Authorization header format, "
                                            "expected 'Bearer TOKEN'")
        info = self._validate(token)
        if info is None:
            return None, self._unauthorized("Invalid or expired token")
        refusal = self._check_dpop(record, scheme.lower(), token, info)
        if refusal is not None:
            return None, refusal
        bound = info.get("resource")
        if bound is None and self.require_resource_binding and not info.get("static"):
            return None, self._unauthorized("Token is not bound to a resource")
        # MCP "Token Audience Binding": refuse tokens issued for another resource.
        if bound is not None and bound != self.resource:
            return None, self._unauthorized("Token was issued for another resource")
        scopes = info.get("scopes")
        if not isinstance(scopes, set):
            info["scopes"] = set(str(info.get("scope") or "").split())
        return info, None

    def _check_dpop(self, record: RecordedRequest, scheme: str, token: str,
                    info: TokenInfo) -> Optional[Response]:
        """RFC 9449 §7.1: a DPoP-scheme request needs a valid proof for this request,
        token and key; §7.2: a DPoP-bound token is never accepted as a Bearer token."""
        cnf = info.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if scheme == "bearer":
            if jkt is not None:
                return self._dpop_unauthorized("invalid_token",
                                               "DPoP-bound token sent as a Bearer token")
            return None
        try:
            digest = "content_digest" in (self.dpop.peek_claims(record) or {})
            self.dpop.check(record, self.base_url + record.path, token, jkt,
                            record.body if digest or self.dpop.require_content_digest
                            else None)
        except DPoPProofError as exc:
            record.info["dpop_error"] = str(exc)
            return self._dpop_unauthorized(exc.error, str(exc))
        if jkt is None:
            return self._dpop_unauthorized("invalid_token", "the token is not DPoP-bound")
        return None

    def _dpop_unauthorized(self, error: str, description: str) -> Response:
        params = ['error="%s"' % error, 'error_description="%s"' % description,
                  'algs="%s"' % " ".join(self.dpop.algorithms)]
        if self.include_resource_metadata_in_challenge:
            params.append('resource_metadata="%s"' % (self.challenge_resource_metadata
                                                      or self.prm_url))
        return Response.json(401, {"error": error, "error_description": description},
                             [("WWW-Authenticate", "DPoP " + ", ".join(params))]
                             + self.dpop.nonce_headers())

    # -- JSON-RPC ------------------------------------------------------------------------

    def _rpc_error(self, status: int, code: int, message: str, msg_id: Any = None,
                   data: Any = None) -> Response:
        error: Dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        return Response.json(status, {"jsonrpc": "2.0", "id": msg_id, "error": error})

    def _mcp(self, record: RecordedRequest, token: TokenInfo) -> Response:
        if record.method == "DELETE":
            return self._delete_session(record)
        if record.method == "GET" and record.headers.get("Last-Event-ID") is not None:
            resumed = self._resume(record)
            if resumed is not None:
                return resumed
        if record.method != "POST":
            # No standalone GET SSE stream in this server.
            return Response.json(405, {"jsonrpc": "2.0", "id": None, "error": {
                "code": TS_BAD_REQUEST, "message": "Method not allowed."}},
                [("Allow", "POST, DELETE" if self.sessions_enabled else "POST")])
        accept = [p.split(";")[0].strip().lower()
                  for p in (record.headers.get("Accept") or "").split(",")]
        if "application/json" not in accept or "text/event-stream" not in accept:
            return self._rpc_error(406, TS_BAD_REQUEST, "Not Acceptable: Client must accept "
                                   "both application/json and text/event-stream")
        if not is_json_media(record.headers.get("Content-Type")):
            return self._rpc_error(415, TS_BAD_REQUEST, "Unsupported Media Type: "
                                   "Content-Type must be application/json")
        try:
            msg = json.loads(record.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._rpc_error(400, PARSE_ERROR, "Parse error")
        if isinstance(msg, list):
            return self._rpc_error(400, INVALID_REQUEST, "Invalid Request: batching is not "
                                   "supported")
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            return self._rpc_error(400, INVALID_REQUEST, "Invalid Request")
        method = msg.get("method")
        if method is None:
            return Response(202)  # a response or error sent by the client
        if not isinstance(method, str):
            return self._rpc_error(400, INVALID_REQUEST, "Invalid Request", msg.get("id"))
        record.info["jsonrpc_method"] = method
        record.info["jsonrpc_id"] = msg.get("id")
        params = msg.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return self._rpc_error(400, INVALID_PARAMS, "Invalid params", msg.get("id"))
        if self.required_scope and method in self.scope_required_for:
            needed = set(self.required_scope.split())
            if not needed <= token["scopes"]:
                return self._forbidden(self.required_scope)
        try:
            if method == "initialize":
                record.info["lifecycle"] = "stateful"
                if self.stateless_only:
                    raise _RpcError(METHOD_NOT_FOUND, "Method not found: initialize",
                                    status=404, msg_id=msg.get("id"))
                return self._initialize(record, msg, params)
            if not self.legacy_only and (self.stateless_only or
                                         self._looks_stateless(record, params)):
                record.info["lifecycle"] = "stateless"
                return self._stateless(record, msg, method, params, token)
            record.info["lifecycle"] = "stateful"
            return self._stateful(record, msg, method, params, token)
        except _RpcError as exc:
            return self._rpc_error(exc.status, exc.code, exc.message, exc.msg_id, exc.data)

    def _looks_stateless(self, record: RecordedRequest, params: Dict[str, Any]) -> bool:
        header = record.headers.get("MCP-Protocol-Version")
        if header is not None:
            return header not in self.legacy_versions
        meta = params.get("_meta")
        return isinstance(meta, dict) and META_PROTOCOL_VERSION in meta

    # stateful lifecycle ---------------------------------------------------------------

    def _initialize(self, record: RecordedRequest, msg: Dict[str, Any],
                    params: Dict[str, Any]) -> Response:
        if "id" not in msg:
            raise _RpcError(INVALID_REQUEST, "initialize must be a request")
        requested = params.get("protocolVersion")
        version = requested if requested in self.legacy_versions else self.legacy_versions[0]
        record.info["protocol_version"] = version
        record.info["client_info"] = params.get("clientInfo")
        headers: List[Tuple[str, str]] = []
        with self._lock:
            self._negotiated = version
            self._ever_initialized = True
            if self.sessions_enabled:
                sid = secrets.token_hex(16)
                self._sessions[sid] = {"version": version, "initialized": False}
                headers.append(("Mcp-Session-Id", sid))
                record.info["session_id"] = sid
        result: Dict[str, Any] = {"protocolVersion": version,
                                  "capabilities": {"tools": {}},
                                  "serverInfo": dict(self.server_info)}
        return self._reply(msg["id"], result, headers)

    def _stateful(self, record: RecordedRequest, msg: Dict[str, Any], method: str,
                  params: Dict[str, Any], token: TokenInfo) -> Response:
        msg_id = msg.get("id")
        header = record.headers.get("MCP-Protocol-Version")
        session: Optional[Dict[str, Any]] = None
        with self._lock:
            if self.sessions_enabled:
                sid = record.headers.get("Mcp-Session-Id")
                if not self._ever_initialized:
                    raise _RpcError(TS_BAD_REQUEST, "Bad Request: Server not initialized",
                                    status=400)
                if sid is None:
                    raise _RpcError(TS_BAD_REQUEST, "Bad Request: Mcp-Session-Id header is "
                                    "required", status=400)
                session = self._sessions.get(sid)
                if session is None:
                    raise _RpcError(TS_SESSION_NOT_FOUND, "Session not found", status=404)
                negotiated: Optional[str] = session["version"]
            else:
                negotiated = self._negotiated
        if header is not None and header not in self.legacy_versions:
            raise _RpcError(TS_BAD_REQUEST, "Bad Request: Unsupported protocol version: %s "
                            "(supported versions: %s)" % (header, ", ".join(
                                self.legacy_versions)), status=400)
        if self.strict_protocol_version_header and negotiated is not None:
            # 2025-06-18 and later: the header is required after initialization.
            if header is None and negotiated != "2025-03-26":
                raise _RpcError(TS_BAD_REQUEST, "Bad Request: MCP-Protocol-Version header "
                                "is required", status=400)
            if header is not None and header != negotiated:
                raise _RpcError(TS_BAD_REQUEST, "Bad Request: MCP-Protocol-Version does not "
                                "match the negotiated version", status=400)
        record.info["protocol_version"] = header or negotiated or "2025-03-26"
        if "id" not in msg:
            if method == "notifications/initialized" and session is not None:
                with self._lock:
                    session["initialized"] = True
            return Response(202)
        result = self._dispatch_method(method, params, token, msg_id, stateless=False)
        return self._reply(msg_id, result)

    def _delete_session(self, record: RecordedRequest) -> Response:
        if not self.sessions_enabled:
            return Response.json(405, {"jsonrpc": "2.0", "id": None, "error": {
                "code": TS_BAD_REQUEST, "message": "Method not allowed."}}, [("Allow", "POST")])
        sid = record.headers.get("Mcp-Session-Id")
        if sid is None:
            return self._rpc_error(400, TS_BAD_REQUEST,
                                   "Bad Request: Mcp-Session-Id header is required")
        with self._lock:
            if self._sessions.pop(sid, None) is None:
                return self._rpc_error(404, TS_SESSION_NOT_FOUND, "Session not found")
        return Response(200)

    # stateless lifecycle (2026-07-28) ----------------------------------------------------

    def _stateless(self, record: RecordedRequest, msg: Dict[str, Any], method: str,
                   params: Dict[str, Any], token: TokenInfo) -> Response:
        msg_id = msg.get("id")
        meta = params.get("_meta")
        missing = [k for k in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES)
                   if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise _RpcError(INVALID_PARAMS, "Invalid params: missing _meta keys: "
                            + ", ".join(missing), status=400, msg_id=msg_id)
        assert isinstance(meta, dict)
        version = meta[META_PROTOCOL_VERSION]
        record.info["protocol_version"] = version
        record.info["client_capabilities"] = meta.get(META_CLIENT_CAPABILITIES)
        record.info["client_info"] = meta.get(META_CLIENT_INFO)
        header = record.headers.get("MCP-Protocol-Version")
        if header is None:
            raise _RpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version header "
                            "is required", status=400, msg_id=msg_id)
        if header != version:
            raise _RpcError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version does not "
                            "match _meta protocolVersion", status=400, msg_id=msg_id)
        if version not in self.stateless_versions:
            raise _RpcError(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                            {"supported": list(self.stateless_versions),
                             "requested": version}, status=400, msg_id=msg_id)
        if record.headers.get("Mcp-Method") != method:
            raise _RpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Method does not match "
                            "the method", status=400, msg_id=msg_id)
        if method in _NAMED_METHODS:
            expected = params.get(_NAMED_METHODS[method])
            name = record.headers.get("Mcp-Name")
            if name is None or _decode_header_value(name) != expected:
                raise _RpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Name does not match "
                                "the request", status=400, msg_id=msg_id)
        if method == "tools/call":
            self._check_param_headers(record, params, msg_id)
        if "id" not in msg:
            return Response(202)
        result = self._dispatch_method(method, params, token, msg_id, stateless=True)
        result["resultType"] = "complete"
        if method in ("tools/list", "server/discover"):
            result.update(_LIST_CACHE)
        return self._reply(msg_id, result)

    def _check_param_headers(self, record: RecordedRequest, params: Dict[str, Any],
                             msg_id: Any) -> None:
        """SEP-2243: each x-mcp-header argument mirrored in its Mcp-Param-* header."""
        received = dict((k, v) for k, v in record.headers.items()
                        if k.lower().startswith("mcp-param-"))
        record.info["param_headers"] = received
        with self._lock:
            entry = self._tools.get(params.get("name"))  # type: ignore[arg-type]
        if entry is None:
            return
        arguments = params.get("arguments")
        for path, header in _declared_headers(entry[0].get("inputSchema")):
            value: Any = arguments
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            expected = _header_text(value)
            sent = record.headers.get("Mcp-Param-" + header)
            if (sent is None) != (expected is None) or (
                    sent is not None and _decode_header_value(sent) != expected):
                raise _RpcError(HEADER_MISMATCH, "Header mismatch: Mcp-Param-%s does not "
                                "match the arguments" % header, status=400, msg_id=msg_id)

    # methods -----------------------------------------------------------------------------

    def _dispatch_method(self, method: str, params: Dict[str, Any], token: TokenInfo,
                         msg_id: Any, stateless: bool) -> Dict[str, Any]:
        if method == "ping":
            return {}
        if method == "tools/list":
            return self._tools_list(params, msg_id)
        if method == "tools/call":
            return self._tools_call(params, token, msg_id)
        if method == "server/discover":
            return {"supportedVersions": list(self.stateless_versions) + (
                [] if self.stateless_only else list(self.legacy_versions)),
                "capabilities": {"tools": {}},
                "_meta": {META_SERVER_INFO: dict(self.server_info)}}
        # 2026-07-28: -32601 comes with HTTP 404; the stateful transport answers 200.
        raise _RpcError(METHOD_NOT_FOUND, "Method not found: %s" % method,
                        status=404 if stateless else 200, msg_id=msg_id)

    def _tools_list(self, params: Dict[str, Any], msg_id: Any) -> Dict[str, Any]:
        with self._lock:
            tools = [dict(d) for d, _ in self._tools.values()]
        start = 0
        cursor = params.get("cursor")
        if cursor is not None:
            try:
                start = int(str(cursor).replace("page-", "", 1))
            except ValueError:
                raise _RpcError(INVALID_PARAMS, "Invalid cursor", msg_id=msg_id) from None
            if start < 0 or start > len(tools):
                raise _RpcError(INVALID_PARAMS, "Invalid cursor", msg_id=msg_id)
        if not self.page_size:
            return {"tools": tools[start:]}
        end = start + self.page_size
        result: Dict[str, Any] = {"tools": tools[start:end]}
        if end < len(tools):
            result["nextCursor"] = "page-%d" % end
        return result

    def _tools_call(self, params: Dict[str, Any], token: TokenInfo,
                    msg_id: Any) -> Dict[str, Any]:
        name = params.get("name")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        with self._lock:
            entry = self._tools.get(name) if isinstance(name, str) else None
        if entry is None:
            raise _RpcError(INVALID_PARAMS, "Unknown tool: %s" % (name,), msg_id=msg_id)
        if not isinstance(arguments, dict):
            raise _RpcError(INVALID_PARAMS, "arguments must be an object", msg_id=msg_id)
        try:
            value = entry[1](dict(arguments), dict(token))
        except ValueError as exc:
            raise _RpcError(INVALID_PARAMS, "Invalid params: %s" % exc, msg_id=msg_id) from None
        except Exception as exc:
            return {"content": [{"type": "text", "text": "tool raised %s"
                                 % type(exc).__name__}], "isError": True}
        if isinstance(value, dict) and "content" in value:
            return dict(value)
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return {"content": [{"type": "text", "text": text}]}

    def _reply(self, msg_id: Any, result: Dict[str, Any],
               headers: Optional[List[Tuple[str, str]]] = None) -> Response:
        payload = {"jsonrpc": "2.0", "id": msg_id, "result": result}
        sse = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
        if self.sse_keepalive_forever is not None:
            return Response(200, sse + list(headers or []),
                            stream=self._keepalives(self.sse_keepalive_forever))
        if self.sse_close_early and "protocolVersion" not in result \
                and "resultType" not in result:
            return Response(200, sse + list(headers or []),
                            stream=iter([self._park(payload, self.sse_close_early)]))
        if self.response_mode == "json":
            return Response.json(200, payload, headers)
        events: List[str] = []
        if self.sse_priming_event:
            events.append("id: 0\ndata: \n\n")
        for i in range(self.sse_notifications):
            note = {"jsonrpc": "2.0", "method": "notifications/message",
                    "params": {"level": "info", "logger": "mcpauth-testing",
                               "data": "notification %d" % i}}
            events.append("event: message\ndata: %s\n\n" % json.dumps(note, sort_keys=True))
        events.append("event: message\nid: %d\ndata: %s\n\n" % (
            self.sse_notifications + 1, json.dumps(payload, sort_keys=True)))
        return Response(200, sse + list(headers or []), "".join(events).encode("utf-8"))

    # SSE streams closed early, resumed, or kept alive forever ------------------------------

    def _park(self, payload: Dict[str, Any], closes: int) -> bytes:
        """Hold ``payload`` back; return the priming event that ends the stream early."""
        event_id = "ev-%d" % next(self._event_ids)
        with self._lock:
            self._parked[event_id] = (payload, closes - 1)
        return ("id: %s\nretry: %d\ndata: \n\n" % (event_id, self.sse_retry_ms)).encode()

    def _resume(self, record: RecordedRequest) -> Optional[Response]:
        last = record.headers.get("Last-Event-ID")
        record.info["last_event_id"] = last
        with self._lock:
            parked = self._parked.pop(last or "", None)
        if parked is None:
            return None
        payload, closes = parked
        sse = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
        if closes > 0:
            return Response(200, sse, stream=iter([self._park(payload, closes)]))
        event = "event: message\nid: ev-%d\ndata: %s\n\n" % (
            next(self._event_ids), json.dumps(payload, sort_keys=True))
        return Response(200, sse, stream=iter([event.encode("utf-8")]))

    def _keepalives(self, interval: float) -> Iterator[bytes]:
        while not self._stopping:
            yield b": keepalive\n\n"
            time.sleep(interval)
