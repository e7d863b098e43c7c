"""The loopback HTTP machinery shared by the test servers (stdlib only).

A :class:`LoopbackServer` binds ``127.0.0.1`` on an ephemeral port when it is built (so
its URL is known before it serves), answers from a daemon thread once started, records
every request as a :class:`RecordedRequest` *before* the response is written (so a test
that has its response also sees the record), and never writes to stderr.

HTTP/1.1 keep-alive is supported (``requests`` pools connections); :meth:`stop` closes
the open connections too, so a stopped server really stops answering. Request bodies
are read by ``Content-Length`` or ``Transfer-Encoding: chunked`` and capped
(:data:`MAX_BODY`, 413 beyond it).
"""

import http.server
import itertools
import json
import socket
import socketserver
import threading
import time
import weakref
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Set, Tuple, Union)
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Headers", "LoopbackServer", "MAX_BODY", "RecordedRequest", "Response"]

#: Largest request body a test server reads; a larger one gets 413.
MAX_BODY = 1024 * 1024
_DRAIN_LIMIT = 16 * MAX_BODY

#: Header values never shown in a repr.
_SECRET_HEADERS = frozenset(["authorization", "dpop", "cookie", "proxy-authorization"])

Body = Union[bytes, str, Dict[str, Any], List[Any], None]


class Headers(object):
    """An immutable, case-insensitive view of HTTP header fields, in arrival order."""

    __slots__ = ("_items",)

    def __init__(self, items: Sequence[Tuple[str, str]] = ()) -> None:
        self._items: Tuple[Tuple[str, str], ...] = tuple((str(k), str(v)) for k, v in items)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The first value of ``name`` (case-insensitive), or ``default``."""
        lname = name.lower()
        for key, value in self._items:
            if key.lower() == lname:
                return value
        return default

    def get_all(self, name: str) -> List[str]:
        """Every value of ``name``, in arrival order."""
        lname = name.lower()
        return [value for key, value in self._items if key.lower() == lname]

    def items(self) -> List[Tuple[str, str]]:
        """All ``(name, value)`` pairs as received."""
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([key for key, _ in self._items])

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        shown = ", ".join(
            "%s: %s" % (k, "[secure]" if k.lower() in _SECRET_HEADERS else v)
            for k, v in self._items)
        return "Headers(%s)" % shown


class RecordedRequest(object):
    """One request as a test server received it, plus what the server made of it.

    Attributes:
        method: the HTTP method.
        path: the request target as sent (path and query).
        headers: a case-insensitive :class:`Headers`.
        body: the raw body bytes.
        form: ``application/x-www-form-urlencoded`` fields, first value of each (empty
            for other bodies); :attr:`form_lists` keeps every value.
        time: ``time.time()`` when the request was read.
        status: the HTTP status the server answered with.
        info: server-side observations, e.g. ``auth_method``, ``client_id``,
            ``grant_type``, ``error``, ``client_assertion_header`` (AS) or
            ``token_info``, ``jsonrpc_method``, ``protocol_version`` (MCP server).
    """

    __slots__ = ("method", "path", "headers", "body", "form", "form_lists", "time",
                 "status", "info")

    def __init__(self, method: str, path: str, headers: Headers, body: bytes,
                 time_: float, status: int = 0,
                 info: Optional[Dict[str, Any]] = None) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.time = time_
        self.status = status
        self.info: Dict[str, Any] = dict(info or {})
        self.form_lists: Dict[str, List[str]] = {}
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            for key, value in parse_qsl(text, keep_blank_values=True):
                self.form_lists.setdefault(key, []).append(value)
        self.form: Dict[str, str] = dict((k, v[0]) for k, v in self.form_lists.items())

    @property
    def url_path(self) -> str:
        """The path without the query string."""
        return urlsplit(self.path).path

    @property
    def query(self) -> Dict[str, List[str]]:
        """The query string parameters (every value)."""
        out: Dict[str, List[str]] = {}
        for key, value in parse_qsl(urlsplit(self.path).query, keep_blank_values=True):
            out.setdefault(key, []).append(value)
        return out

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not JSON)."""
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self) -> str:
        return "RecordedRequest(%s %s -> %s)" % (self.method, self.url_path, self.status)


class Response(object):
    """A response a handler wants written: status, header pairs and body bytes.

    ``stream``, when given, is an iterable of byte chunks written after ``body`` with
    ``Transfer-Encoding: chunked``, each as it comes (for SSE streams that trickle,
    keep-alive comments, streams closed early); a write the client does not take ends it.
    """

    __slots__ = ("status", "headers", "body", "close", "stream")

    def __init__(self, status: int, headers: Optional[Sequence[Tuple[str, str]]] = None,
                 body: bytes = b"", close: bool = False,
                 stream: Optional[Iterable[bytes]] = None) -> None:
        self.status = status
        self.headers: List[Tuple[str, str]] = list(headers or [])
        self.body = body
        self.close = close
        self.stream = stream

    @classmethod
    def make(cls, status: int, body: Body = None,
             headers: Optional[Union[Mapping[str, str], Sequence[Tuple[str, str]]]] = None,
             ) -> "Response":
        """Build a response; dicts and lists become JSON unless a Content-Type is given."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
        has_ctype = any(k.lower() == "content-type" for k, _ in pairs)
        if isinstance(body, (dict, list)):
            data = json.dumps(body, sort_keys=True).encode("utf-8")
            if not has_ctype:
                pairs.append(("Content-Type", "application/json"))
        elif isinstance(body, str):
            data = body.encode("utf-8")
            if not has_ctype:
                pairs.append(("Content-Type", "text/plain; charset=utf-8"))
        else:
            data = body or b""
        return cls(status, pairs, data)

    @classmethod
    def json(cls, status: int, obj: Any,
             headers: Optional[Sequence[Tuple[str, str]]] = None) -> "Response":
        """A JSON response with ``Content-Type: application/json``."""
        pairs = [("Content-Type", "application/json")] + list(headers or [])
        return cls(status, pairs, json.dumps(obj, sort_keys=True).encode("utf-8"))


class _Route(object):
    __slots__ = ("method", "response", "times")

    def __init__(self, method: Optional[str], response: Response,
                 times: Optional[int]) -> None:
        self.method = method
        self.response = response
        self.times = times


class _BodyTooLarge(Exception):
    pass


class _BadRequestBody(Exception):
    pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    # socketserver's default listen backlog is 5: a burst of parallel clients would see
    # dropped SYNs (1 s retransmits) or resets.
    request_queue_size = 128

    def __init__(self, owner: "LoopbackServer") -> None:
        # A weak reference: no owner <-> server cycle, so an owner that is dropped
        # unstarted is freed (and its socket closed by __del__) at once, never by the
        # cycle collector in an order that leaks a ResourceWarning.
        self._owner_ref = weakref.ref(owner)
        http.server.HTTPServer.__init__(self, ("127.0.0.1", 0), _Handler)

    @property
    def owner(self) -> "LoopbackServer":
        owner = self._owner_ref()
        if owner is None:
            raise RuntimeError("the test server object was garbage-collected unstopped")
        return owner

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # take seconds on some hosts; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Default prints a traceback to stderr; keep it for the test to inspect instead.
        import sys
        exc = sys.exc_info()[1]
        owner = self._owner_ref()
        if owner is not None and exc is not None and \
                not isinstance(exc, (ConnectionError, socket.timeout)):
            owner._note_error(exc)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mcpauth-testing"
    sys_version = ""
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK (~40 ms a response on Linux loopback).
    disable_nagle_algorithm = True
    server: Any  # set by socketserver.BaseRequestHandler.__init__

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence the default stderr access log."""

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        http.server.BaseHTTPRequestHandler.setup(self)
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            http.server.BaseHTTPRequestHandler.finish(self)
        finally:
            self.server.owner._track(self.connection, False)

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks: List[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _BadRequestBody() from None
                if size == 0:
                    # trailer section, ends with an empty line
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise _BodyTooLarge()
                chunks.append(self.rfile.read(size))
                self.rfile.readline(16)
            return b"".join(chunks)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequestBody() from None
        if length < 0:
            raise _BadRequestBody()
        if length > MAX_BODY:
            # Read (and drop) a moderately oversized body so the client can finish
            # sending and see the 413 instead of a broken pipe.
            if length <= _DRAIN_LIMIT:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 65536))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            raise _BodyTooLarge()
        return self.rfile.read(length)

    def _dispatch(self) -> None:
        owner: LoopbackServer = self.server.owner
        headers = Headers(list(self.headers.items()))
        started = time.time()
        try:
            body = self._read_body()
            failure: Optional[Response] = None
        except _BodyTooLarge:
            body = b""
            failure = Response.json(413, {"error": "invalid_request",
                                          "error_description": "request body too large"})
            failure.close = True
        except _BadRequestBody:
            body = b""
            failure = Response.json(400, {"error": "invalid_request",
                                          "error_description": "malformed request body"})
            failure.close = True
        record = RecordedRequest(self.command, self.path, headers, body, started)
        if failure is not None:
            response = failure
        else:
            try:
                response = owner._respond(record)
            except Exception as exc:  # a bug in a test server must not hang the client
                owner._note_error(exc)
                response = Response.json(500, {"error": "server_error",
                                               "error_description": "test server bug: %s"
                                               % type(exc).__name__})
        record.status = response.status
        owner._record(record)
        delay = record.info.pop("_delay", 0)
        if delay:
            time.sleep(float(delay))
        self._write(response)

    def _write(self, response: Response) -> None:
        if response.close or self.server.owner._stopping:
            self.close_connection = True
        self.send_response(response.status)
        names = set(k.lower() for k, _ in response.headers)
        for key, value in response.headers:
            self.send_header(key, value)
        if response.stream is not None:
            self.send_header("Transfer-Encoding", "chunked")
        elif "content-length" not in names:
            self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if response.stream is None:
            if response.body:
                self.wfile.write(response.body)
            return
        try:
            for chunk in itertools.chain([response.body], response.stream):
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                if self.server.owner._stopping:
                    break
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch


class LoopbackServer(object):
    """Base class: an HTTP server on ``127.0.0.1``, port 0, recording every request.

    The socket is bound when the object is built, so :attr:`base_url` is known at once;
    :meth:`start` begins answering from a daemon thread and :meth:`stop` ends it. It is a
    context manager (``with Server() as s:``). Subclasses implement :meth:`handle`.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._requests: List[RecordedRequest] = []
        self._routes: Dict[str, List[_Route]] = {}
        self._connections: Set[Any] = set()
        self._errors: List[BaseException] = []
        self._stopping = False
        self._thread: Optional[threading.Thread] = None
        self._httpd = _Server(self)
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server is bound to."""
        return int(self._httpd.server_port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return "http://127.0.0.1:%d" % self.port

    def start(self) -> "LoopbackServer":
        """Start answering requests from a daemon thread. Returns self."""
        with self._lock:
            if self._closed:
                raise RuntimeError("a stopped test server cannot be restarted")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                    name="mcpauth-testing-%d" % self.port)
                self._thread.daemon = True
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            thread = self._thread
            connections = list(self._connections)
        if thread is not None:
            # shutdown() waits for serve_forever's next poll; a connection to our own
            # listening socket wakes its selector at once (it is never answered).
            stopper = threading.Thread(target=self._httpd.shutdown)
            stopper.daemon = True
            stopper.start()
            while stopper.is_alive():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                except OSError:
                    pass
                stopper.join(0.01)
            thread.join(5)
        self._httpd.server_close()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    close = stop

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- recording -------------------------------------------------------------------

    @property
    def requests(self) -> List[RecordedRequest]:
        """A snapshot (copy) of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: Optional[str] = None) -> List[RecordedRequest]:
        """Recorded requests whose path (without query) is ``path``."""
        return [r for r in self.requests
                if r.url_path == path and (method is None or r.method == method)]

    def reset_records(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            del self._requests[:]

    @property
    def errors(self) -> List[BaseException]:
        """Exceptions raised inside the server's own code (bugs), for assertions."""
        with self._lock:
            return list(self._errors)

    # -- canned responses ----------------------------------------------------------------

    def set_route(self, path: str, status: int = 200, body: Body = None,
                  headers: Optional[Union[Mapping[str, str], Sequence[Tuple[str, str]]]] = None,
                  method: Optional[str] = None, times: Optional[int] = None) -> None:
        """Answer requests to ``path`` with a canned response, before any built-in route.

        Args:
            path: the request path to match, without the query string.
            status: the HTTP status.
            body: bytes as-is, str as UTF-8 text/plain, dict or list as JSON (unless
                ``headers`` sets a Content-Type).
            headers: extra response header fields (e.g. ``Location`` for a redirect).
            method: only match this method (any if None).
            times: answer this many times, then fall back (forever if None).
        """
        route = _Route(method.upper() if method else None,
                       Response.make(status, body, headers), times)
        with self._lock:
            self._routes.setdefault(path, []).insert(0, route)

    def clear_route(self, path: Optional[str] = None) -> None:
        """Remove canned responses for ``path`` (all paths if None)."""
        with self._lock:
            if path is None:
                self._routes.clear()
            else:
                self._routes.pop(path, None)

    def _canned(self, record: RecordedRequest) -> Optional[Response]:
        with self._lock:
            routes = self._routes.get(record.url_path) or []
            for route in routes:
                if route.method is not None and route.method != record.method:
                    continue
                if route.times is not None:
                    if route.times <= 0:
                        continue
                    route.times -= 1
                src = route.response
                return Response(src.status, src.headers, src.body, stream=src.stream)
        return None

    # -- internals -------------------------------------------------------------------

    def _respond(self, record: RecordedRequest) -> Response:
        canned = self._canned(record)
        if canned is not None:
            record.info["canned"] = True
            return canned
        return self.handle(record)

    def handle(self, record: RecordedRequest) -> Response:  # pragma: no cover - abstract
        """Answer one request (subclasses override); may add to ``record.info``."""
        return Response.json(404, {"error": "not_found"})

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)

    def _track(self, conn: Any, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _note_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def __del__(self) -> None:
        # Close an unstarted server's socket quietly (no ResourceWarning under
        # filterwarnings=error); a started one is stopped explicitly.
        try:
            if not self._closed and self._thread is None:
                self._closed = True
                self._httpd.server_close()
        except Exception:
            pass


def not_found() -> Response:
    """A plain 404 JSON response."""
    return Response.json(404, {"error": "not_found"})


def is_json_media(value: Optional[str]) -> bool:
    """True when a Content-Type value is ``application/json`` (parameters ignored)."""
    return (value or "").split(";")[0].strip().lower() == "application/json"


Clock = Callable[[], float]
