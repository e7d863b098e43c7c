"""MCPClient on the wire: one JSON-RPC message over Streamable HTTP, and its reply.

MCP "Transports" (Streamable HTTP). Every POST sends ``Content-Type: application/json``
and ``Accept: application/json, text/event-stream``. A reply is a JSON body or an SSE
stream (:mod:`mcpauth._sse`); the reply is the JSON-RPC response whose ``id`` matches the
request. Notifications in the stream go to ``MCPClient.notifications`` and
``on_notification``; a server request in a stream of the stateful lifecycle is answered
(``ping`` with an empty result, anything else with -32601), since the client declares no
capability that invites one; the 2026-07-28 wire has no server-to-client requests, so
there they are only logged.

**Resuming a stream** (stateful lifecycle; "Resumability and Redelivery"): a server may
close an SSE stream before the response, after an event with an ``id`` (polling). The
client waits the ``retry`` time the stream set (1 s if none), then reconnects with
``GET`` and ``Last-Event-ID`` and reads the response from there, as often as the server
closes again, within the call's deadline. After a resumed stream that brought no new
event the wait doubles (from 0.1 s), so a server that keeps closing at once is not
flooded with GETs. A stream closed without any event ID cannot be resumed: that is a
:class:`~mcpauth.errors.ProtocolError`. The 2026-07-28 wire has no GET stream, so there a
closed stream is always an error.

**Limits** (all in :class:`CallLimits`): each public call has an overall deadline
(``call_timeout``) that nothing extends: not the bytes of a slow reply, not SSE
keep-alive comments, not resumed streams; each read waits at most ``timeout`` for the
next bytes (and never past the deadline); the bytes read for one reply (a JSON body, or
an SSE stream with the streams that resume it) are capped at ``max_response_bytes``,
counted after a ``Content-Encoding`` of gzip or deflate is undone in bounded steps (RFC
9110 §8.4), so a small compressed reply cannot inflate past the cap.

Redirects are not followed (a 3xx raises ProtocolError naming the target), so a
credentialed request is never re-sent somewhere else. JSON-RPC 2.0 §5: an ``error``
member raises :class:`~mcpauth.errors.MCPError`.
"""

import json
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, NamedTuple, Optional

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from ._sse import SSEParser, iter_lines
from .errors import (
    InsufficientScopeError,
    MCPAuthError,
    MCPError,
    ProtocolError,
    TransportError,
    UnauthorizedError,
    clean_peer_text,
)
from .transport import iter_decoded, loads_json, redact_url

logger = logging.getLogger("mcpauth")

Message = Dict[str, Any]

METHOD_NOT_FOUND = -32601
ACCEPT = "application/json, text/event-stream"
#: Seconds to wait before resuming a stream that set no ``retry`` time.
DEFAULT_RETRY = 1.0
#: Streams a reply may be resumed from before the client gives up.
MAX_RESUMES = 100
#: Seconds before resuming again after a resumed stream that brought no new event; the
#: wait doubles with each such stream in a row.
IDLE_BACKOFF = 0.1
# What reading a reply may raise: the body is read from urllib3 directly (through the
# transport's bounded decoder), so its errors and the socket's come as they are.
_READ_ERRORS = (requests.exceptions.RequestException, Urllib3Error, OSError)


class Reply(NamedTuple):
    """What one POST produced: the HTTP status, the JSON-RPC message for our request
    (None when there was none) and the response headers."""

    status: int
    message: Optional[Message]
    headers: Mapping[str, str]


# ----------------------------------------------------------------------------- limits

class CallLimits(object):
    """The deadline of one public call and the byte cap of each reply in it."""

    def __init__(self, call_timeout: float, gap_timeout: float, max_bytes: int) -> None:
        self.call_timeout = call_timeout
        self.gap_timeout = gap_timeout
        self.max_bytes = max_bytes
        self.end = time.monotonic() + call_timeout

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def expired(self, what: str) -> TransportError:
        return TransportError("{} did not complete within the {:g} s call timeout".format(
            what, self.call_timeout))

    def read_error(self, what: str, exc: Exception) -> TransportError:
        """The error for a read that failed: the deadline's, once it has passed."""
        if self.remaining() <= 0:
            return self.expired(what)
        return TransportError("{} failed while reading the reply ({})".format(
            what, type(exc).__name__))

    def read_timeout(self, what: str) -> float:
        """Seconds the next connect or read may wait: the gap timeout, never past the
        deadline. Raises the deadline's TransportError once it has passed."""
        left = self.remaining()
        if left <= 0:
            raise self.expired(what)
        return min(self.gap_timeout, left)

    def sleep(self, seconds: float, what: str) -> None:
        """Wait before a reconnection, unless that would pass the deadline."""
        if seconds >= self.remaining():
            raise self.expired(what)
        time.sleep(seconds)

    def capped(self, chunks: Any, response: Any, what: str) -> Any:
        """Yield ``chunks`` while the deadline holds, re-arming the socket's read timeout
        after each chunk so that no read waits past the deadline."""
        sock = _socket_of(response)
        for chunk in chunks:
            timeout = self.read_timeout(what)  # keep-alive bytes do not extend the call
            if sock is not None:
                try:
                    sock.settimeout(timeout)
                except OSError:
                    sock = None
            yield chunk


class ByteCap(object):
    """Bytes read for one reply, across the streams that resume it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int, what: str, status: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise ProtocolError("{} exceeds the {} byte limit".format(what, self.limit),
                                status_code=status)


def _socket_of(response: Any) -> Any:
    """The socket under a streamed requests response (urllib3 over http.client), if it
    can be found; the deadline is still checked between reads without it."""
    fp = getattr(getattr(response, "raw", None), "_fp", None)  # http.client.HTTPResponse
    raw = getattr(getattr(fp, "fp", None), "raw", None)  # SocketIO under the reader
    sock = getattr(raw, "_sock", None)
    return sock if hasattr(sock, "settimeout") else None


# ----------------------------------------------------------------------------- JSON-RPC

def is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def kind(message: Any) -> str:
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


def matches(message: Message, msg_id: Any) -> bool:
    got = message.get("id")
    return is_id(got) and type(got) is type(msg_id) and got == msg_id


def mcp_error(error: Dict[str, Any], status: int) -> MCPError:
    return MCPError(error.get("message"), code=error.get("code"), data=error.get("data"),
                    status_code=status)


def media_type(headers: Mapping[str, str]) -> str:
    return (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


# ----------------------------------------------------------------------------- wire

class WireMixin(object):
    """Sending one message and reading its reply; mixed into MCPClient."""

    url: str
    timeout: float
    call_timeout: float
    max_response_bytes: int
    notifications: Deque[Message]
    _session: Any
    _auth: Any
    _headers: Dict[str, str]
    _on_notification: Optional[Callable[[Message], None]]
    _local: threading.local

    # Provided by the lifecycle.
    def _stateful(self) -> bool:
        raise NotImplementedError

    def _stateful_headers(self) -> Dict[str, str]:
        raise NotImplementedError

    def _limits(self) -> CallLimits:
        """The limits of the public call running on this thread (see MCPClient._call)."""
        limits = getattr(self._local, "limits", None)
        if limits is None:
            limits = CallLimits(self.call_timeout, self.timeout, self.max_response_bytes)
        return limits

    def _post(self, method: str, payload: Message, headers: Dict[str, str],
              msg_id: Optional[int]) -> Reply:
        """POST one JSON-RPC message and read the reply (JSON or SSE).

        ``msg_id`` None marks a notification or a response sent by the client: then a
        2xx needs no body.
        """
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
        all_headers = dict(self._headers)
        all_headers.update(headers)
        all_headers["Accept"] = ACCEPT
        all_headers["Content-Type"] = "application/json"
        what = "MCP {} to {}".format(method, redact_url(self.url))
        limits = self._limits()
        response = self._send("POST", all_headers, body, what, limits)
        try:
            if logger.isEnabledFor(logging.DEBUG):  # arguments that mask cost a rebuild
                logger.debug("MCP %s %s -> HTTP %d", clean_peer_text(method, 200),
                             redact_url(self.url), response.status_code)
            return self._read_reply(method, response, msg_id, limits)
        except _READ_ERRORS as exc:
            raise limits.read_error(what, exc) from exc
        finally:
            response.close()

    def _send(self, verb: str, headers: Dict[str, Any], body: Optional[bytes], what: str,
              limits: CallLimits) -> Any:
        timeout = limits.read_timeout(what)
        try:
            return self._session.request(verb, self.url, data=body, headers=headers,
                                         auth=self._auth, timeout=timeout, stream=True,
                                         allow_redirects=False)
        except requests.exceptions.Timeout as exc:
            if limits.remaining() <= 0:
                raise limits.expired(what) from exc
            raise TransportError("{} timed out after {:g} s".format(what, timeout)) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError("{} failed ({})".format(what, type(exc).__name__)) from exc

    def _refuse(self, method: str, response: Any) -> None:
        """Raise for a redirect, a 401 and a 403 ``insufficient_scope``."""
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
        params: Dict[str, str] = {}
        if status in (401, 403) and "WWW-Authenticate" in headers:  # RFC 6750 §3
            from .discovery import bearer_challenge

            challenge = bearer_challenge(headers["WWW-Authenticate"])
            if challenge is not None:
                params = challenge.params
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

    def _read_reply(self, method: str, response: Any, msg_id: Optional[int],
                    limits: CallLimits) -> Reply:
        status = response.status_code
        headers = response.headers
        self._refuse(method, response)
        media = media_type(headers)
        what = "the reply to MCP {} from {}".format(method, redact_url(self.url))
        cap = ByteCap(limits.max_bytes)
        if 200 <= status < 300:
            if msg_id is None:
                return Reply(status, None, headers)
            if media == "application/json":
                return Reply(status, self._json_reply(response, msg_id, what, status, limits,
                                                      cap), headers)
            if media == "text/event-stream":
                return Reply(status, self._sse_reply(method, response, msg_id, what, status,
                                                     limits, cap), headers)
            raise ProtocolError("{} has no JSON-RPC response (HTTP {}, {})".format(
                what, status, repr(media[:60]) if media else "no body type"),
                status_code=status)
        # An HTTP error: a JSON-RPC error body is the server's word; anything else is not.
        message = None
        if media == "application/json":
            try:
                value = loads_json(self._read_capped(response, what, status, limits, cap))
            except (ProtocolError, ValueError):
                value = None
            if kind(value) == "response" and "error" in value:
                message = value
        return Reply(status, message, headers)

    def _body(self, response: Any, what: str, status: int, limits: CallLimits,
              cap: ByteCap) -> Any:
        """The decoded body's chunks, read within the call's deadline and counted against
        the reply's byte cap (compressed bodies are inflated a bounded step at a time)."""
        chunks = limits.capped(iter_decoded(response, redact_url(self.url)), response, what)
        return _counted(chunks, cap, what, status)

    def _read_capped(self, response: Any, what: str, status: int, limits: CallLimits,
                     cap: ByteCap) -> str:
        try:
            return b"".join(self._body(response, what, status, limits, cap)).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8") from None

    def _json_reply(self, response: Any, msg_id: int, what: str, status: int,
                    limits: CallLimits, cap: ByteCap) -> Message:
        try:
            value = loads_json(self._read_capped(response, what, status, limits, cap))
        except ValueError:
            raise ProtocolError("{} is not valid JSON (HTTP {})".format(what, status),
                                status_code=status) from None
        found = self._take_messages(value if isinstance(value, list) else [value], msg_id,
                                    what, status)
        if found is None:
            raise ProtocolError("{} is not a JSON-RPC response to request {}".format(
                what, msg_id), status_code=status)
        return found

    def _sse_reply(self, method: str, response: Any, msg_id: int, what: str, status: int,
                   limits: CallLimits, cap: ByteCap) -> Message:
        parser = SSEParser()
        found = self._read_stream(response, parser, msg_id, what, status, limits, cap)
        resumes = 0
        idle = 0  # resumed streams in a row that brought no new event ID
        seen = parser.last_event_id
        while found is None:
            if not (parser.last_event_id and self._stateful() and resumes < MAX_RESUMES):
                raise ProtocolError("{}: the SSE stream ended without the response to "
                                    "request {}".format(what, msg_id), status_code=status)
            if resumes:
                idle = 0 if parser.last_event_id != seen else idle + 1
                seen = parser.last_event_id
            resumes += 1
            delay = DEFAULT_RETRY if parser.retry_ms is None else parser.retry_ms / 1000.0
            if idle:
                # No progress: back off (doubling from IDLE_BACKOFF) whatever retry says.
                delay = max(delay, IDLE_BACKOFF) * 2 ** min(idle - 1, 16)
            logger.debug("MCP %s: the SSE stream from %s closed before the response; "
                         "resuming in %g s", clean_peer_text(method, 200),
                         redact_url(self.url), delay)
            limits.sleep(delay, "MCP {} to {}".format(method, redact_url(self.url)))
            found = self._resume(method, parser, msg_id, what, limits, cap)
        return found

    def _resume(self, method: str, parser: SSEParser, msg_id: int, what: str,
                limits: CallLimits, cap: ByteCap) -> Optional[Message]:
        """GET the stream again from ``Last-Event-ID`` and read on."""
        headers = dict(self._headers)  # type: Dict[str, Any]
        headers.update(self._stateful_headers())
        headers["Accept"] = "text/event-stream"
        # The ID's own UTF-8 bytes (WHATWG HTML §9.2.4): a str header would be encoded as
        # Latin-1 by http.client, which fails on most non-ASCII text.
        headers["Last-Event-ID"] = parser.last_event_id.encode("utf-8")
        label = "MCP {} (resumed) to {}".format(method, redact_url(self.url))
        response = self._send("GET", headers, None, label, limits)
        try:
            self._refuse(method, response)
            status = response.status_code
            if status != 200 or media_type(response.headers) != "text/event-stream":
                raise ProtocolError("{}: the SSE stream closed before the response and "
                                    "resuming it with GET got HTTP {}".format(what, status),
                                    status_code=status)
            return self._read_stream(response, parser, msg_id, what, status, limits, cap)
        except _READ_ERRORS as exc:
            raise limits.read_error(label, exc) from exc
        finally:
            response.close()

    def _read_stream(self, response: Any, parser: SSEParser, msg_id: int, what: str,
                     status: int, limits: CallLimits, cap: ByteCap) -> Optional[Message]:
        lines = iter_lines(self._body(response, what, status, limits, cap), cap.limit, what,
                           status)
        for event in parser.events(lines):
            if event.event != "message" or not event.data.strip():
                continue  # another event type, or a priming event without data
            try:
                value = loads_json(event.data)
            except ValueError:
                raise ProtocolError("{}: an SSE event is not JSON".format(what),
                                    status_code=status) from None
            del event
            found = self._take_messages(value if isinstance(value, list) else [value],
                                        msg_id, what, status)
            if found is not None:
                return found
        return None

    def _take_messages(self, messages: List[Any], msg_id: int, what: str,
                       status: int) -> Optional[Message]:
        """Deliver notifications, answer server requests, return our response if present."""
        found = None
        for message in messages:
            sort = kind(message)
            if sort == "invalid":
                raise ProtocolError("{} contains a message that is not JSON-RPC 2.0".format(
                    what), status_code=status)
            if sort == "notification":
                self._deliver(message)
            elif sort == "request":
                self._answer_server_request(message)
            elif matches(message, msg_id):
                found = message
            else:
                logger.debug("MCP: ignoring a response to another request in %s", what)
        return found

    def _deliver(self, message: Message) -> None:
        # The method name is the server's: cleaned, so it cannot forge a log line.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("MCP notification %s from %s",
                         clean_peer_text(message["method"], 200), redact_url(self.url))
        self.notifications.append(message)
        if self._on_notification is not None:
            self._on_notification(message)

    def _answer_server_request(self, message: Message) -> None:
        method = message["method"]
        shown = clean_peer_text(method, 200)  # the server's string, for the log
        request_id = message.get("id")
        if not self._stateful() or not is_id(request_id):
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

    def _reply_error(self, reply: Reply, method: str) -> MCPAuthError:
        """The error a reply without a result stands for: its JSON-RPC error as
        MCPError, else a ProtocolError with the HTTP status."""
        if reply.message is not None and "error" in reply.message:
            return mcp_error(reply.message["error"], reply.status)
        return ProtocolError("MCP {} to {} failed with HTTP {}".format(
            method, redact_url(self.url), reply.status), status_code=reply.status)

    def _result_of(self, reply: Reply, method: str) -> Any:
        message = reply.message
        if message is None or "error" in message:
            raise self._reply_error(reply, method)
        return message["result"]


def _counted(chunks: Any, cap: ByteCap, what: str, status: int) -> Any:
    for chunk in chunks:
        cap.take(len(chunk), what, status)
        yield chunk
