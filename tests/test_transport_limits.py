"""The transport's bounds against hostile peers, over real loopback sockets.

* ``timeout`` bounds a whole request end to end: a peer that drips one byte a second
  (never a gap as long as the timeout, so no socket timeout fires) cannot hold a call
  past its deadline, whether it drips the headers or the body.
* Decompression is bounded: a gzip or deflate bomb under the 1 MiB body cap is
  inflated in small steps, on every floor (urllib3 1.24 inflates a whole read at once).
"""

import gzip
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zlib

import pytest

import mcpauth
from mcpauth import grants
from mcpauth.discovery import fetch_protected_resource_metadata
from mcpauth.errors import DiscoveryError, ProtocolError, TransportError
from mcpauth.transport import HttpRequest, RequestsTransport

e2e = pytest.mark.e2e


class RawServer(object):
    """A loopback TCP server that answers every connection with ``serve(conn)``."""

    def __init__(self, serve):
        self.serve = serve
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "http://127.0.0.1:{}".format(self.sock.getsockname()[1])
        self.stop = threading.Event()
        self.hung_up = []  # seconds after the response began at which the client hung up
        self.threads = []
        thread = threading.Thread(target=self._accept)
        thread.daemon = True
        thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,))
            thread.daemon = True
            thread.start()
            self.threads.append(thread)

    def _handle(self, conn):
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                        while len(rest) < length:
                            rest += conn.recv(65536)
                self.serve(self, conn, head)
            except OSError:
                pass

    def drip(self, conn, data, interval):
        """Send ``data`` one byte every ``interval`` seconds; note when the client leaves."""
        start = time.monotonic()
        for i in range(len(data)):
            if self.stop.wait(interval):
                return
            try:
                conn.sendall(data[i:i + 1])
            except OSError:
                self.hung_up.append(time.monotonic() - start)
                return

    def close(self):
        self.stop.set()
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def raw_server():
    servers = []

    def make(serve):
        server = RawServer(serve)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def _drip_body(server, conn, head):
    body = b'{"access_token": "' + b"a" * 100 + b'", "token_type": "Bearer"}'
    conn.sendall(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
    server.drip(conn, body, 1.0)


def _drip_headers(server, conn, head):
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    server.drip(conn, b"X-Slow: " + b"s" * 200 + b"\r\n\r\n{}", 1.0)


def _timed(call):
    start = time.monotonic()
    with pytest.raises(TransportError) as info:
        call()
    return time.monotonic() - start, info.value


@e2e
@pytest.mark.parametrize("serve", [_drip_body, _drip_headers], ids=["body", "headers"])
def test_a_dripping_token_endpoint_cannot_hold_a_call_past_its_timeout(raw_server, serve):
    server = raw_server(serve)
    transport = RequestsTransport(timeout=2)
    elapsed, error = _timed(lambda: grants.request_token(
        transport, server.url + "/token", [("grant_type", "client_credentials")],
        grants.ClientSecretBasic("client", "SECRET-VALUE")))
    assert 1.9 < elapsed < 3.0, elapsed
    assert "timed out after 2 s" in str(error) and "SECRET" not in str(error)
    assert error.retryable is True
    if serve is _drip_body:
        # The socket was shut down at the deadline: the server sees the client leave
        # within two drips (its first write after the shutdown draws the RST, the second
        # fails), so about 4 s after it started, not after the whole 140 s body.
        deadline = time.monotonic() + 5
        while not server.hung_up and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.hung_up and server.hung_up[0] < 5.0, server.hung_up


@e2e
@pytest.mark.parametrize("serve", [_drip_body, _drip_headers], ids=["body", "headers"])
def test_a_dripping_metadata_server_cannot_hold_discovery_past_its_timeout(raw_server,
                                                                          serve):
    server = raw_server(serve)
    transport = RequestsTransport(timeout=2)
    start = time.monotonic()
    with pytest.raises((TransportError, DiscoveryError)):
        fetch_protected_resource_metadata(transport, server.url + "/mcp")
    elapsed = time.monotonic() - start
    # Discovery tries up to two well-known URLs, each bounded by the timeout.
    assert elapsed < 2 * 2 + 1.0, elapsed


@e2e
def test_the_deadline_covers_redirect_hops_together(raw_server):
    def slow_redirect(server, conn, head):
        time.sleep(0.8)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")

    server = raw_server(slow_redirect)
    elapsed, _ = _timed(lambda: RequestsTransport(timeout=2)(
        HttpRequest.get_json(server.url + "/start")))
    assert elapsed < 3.0, elapsed


@e2e
def test_a_prompt_server_is_unaffected_by_the_deadline(raw_server):
    def prompt(server, conn, head):
        conn.sendall(JSON_HEAD + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")

    server = raw_server(prompt)
    transport = RequestsTransport(timeout=2)
    for _ in range(3):
        assert transport(HttpRequest.get_json(server.url + "/m")).body == b"{}"


# ---------------------------------------------------------------------- compression

def _encoded_route(encoding, payload):
    def serve(server, conn, head):
        conn.sendall(JSON_HEAD + b"Content-Encoding: " + encoding + b"\r\nContent-Length: %d"
                     b"\r\nConnection: close\r\n\r\n" % len(payload) + payload)
    return serve


DOC = b'{"resource": "https://mcp.example/mcp", "n": "' + b"x" * 200000 + b'"}'


@e2e
@pytest.mark.parametrize("encoding, payload", [
    (b"gzip", gzip.compress(DOC)),
    (b"x-gzip", gzip.compress(DOC)),
    (b"gzip", gzip.compress(DOC[:100]) + gzip.compress(DOC[100:])),  # two members
    (b"deflate", zlib.compress(DOC)),
    (b"deflate", zlib.compress(DOC)[2:-4]),  # raw deflate, as some servers send
    (b"identity", DOC),
])
def test_compressed_bodies_are_decoded(raw_server, encoding, payload):
    server = raw_server(_encoded_route(encoding, payload))
    response = RequestsTransport(timeout=5)(HttpRequest.get_json(server.url + "/m"))
    assert response.body == DOC


@e2e
@pytest.mark.parametrize("encoding, payload", [
    (b"br", b"\x0b\x00\x80{}\x03"),
    (b"gzip, gzip", gzip.compress(gzip.compress(DOC))),
    (b"gzip", b"not gzip at all"),
    (b"deflate", b"\xff\xfe\xfd not deflate"),
])
def test_unusable_encodings_are_protocol_errors(raw_server, encoding, payload):
    server = raw_server(_encoded_route(encoding, payload))
    with pytest.raises(ProtocolError):
        RequestsTransport(timeout=5)(HttpRequest.get_json(server.url + "/m"))


def _bomb(encoding, inflated):
    """``inflated`` bytes of zeros compressed with ``encoding``, built in pieces."""
    wbits = 16 + zlib.MAX_WBITS if encoding == b"gzip" else zlib.MAX_WBITS
    obj = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1024 * 1024)
    parts = [obj.compress(block) for _ in range(inflated // len(block))]
    parts.append(obj.flush())
    return b"".join(parts)


_MEASURE = textwrap.dedent("""
    import resource, sys, tracemalloc
    from mcpauth.errors import ProtocolError
    from mcpauth.transport import HttpRequest, RequestsTransport

    def peak_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    transport = RequestsTransport(timeout=30)
    transport(HttpRequest.get_json(sys.argv[1] + "/warm"))  # imports, first connection
    before = peak_kib()
    tracemalloc.start()
    try:
        transport(HttpRequest.get_json(sys.argv[1] + "/bomb"))
    except ProtocolError:
        pass
    else:
        raise SystemExit("the bomb was not capped")
    traced = tracemalloc.get_traced_memory()[1] // 1024
    print(peak_kib() - before, traced)
""")


def _measured(script, url):
    """Run ``script URL`` in a fresh interpreter; what it prints: the growth of its peak
    RSS and the peak of traced allocations, in KiB."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(mcpauth.__file__)))
    env = dict(os.environ, PYTHONPATH=package_root)
    out = subprocess.run([sys.executable, "-c", script, url], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")[-2000:]
    return [int(v) for v in out.stdout.decode().split()]


@e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
@pytest.mark.parametrize("encoding", [b"gzip", b"deflate"])
def test_a_decompression_bomb_under_the_cap_costs_little_memory(raw_server, encoding):
    bomb = _bomb(encoding, 1000 * 1024 * 1024)  # 1000 MiB inflated, under 1 MiB on the wire
    assert len(bomb) < 1024 * 1024

    def serve(server, conn, head):
        if not head.startswith(b"GET /bomb "):
            conn.sendall(JSON_HEAD + b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
            return
        payload = bomb
        conn.sendall(JSON_HEAD + b"Content-Encoding: " + encoding + b"\r\nContent-Length: %d"
                     b"\r\nConnection: close\r\n\r\n" % len(payload) + payload)

    grew_kib, traced_kib = _measured(_MEASURE, raw_server(serve).url)
    # The capped body (1 MiB, twice while it is joined) plus a few 64 KiB steps; with
    # urllib3 1.24 the process grew by about 130 MB.
    assert grew_kib < 16 * 1024, grew_kib
    assert traced_kib < 4 * 1024, traced_kib



@e2e
@pytest.mark.parametrize("length", [b"9" * 60000, b"0" * 60000 + b"2", b"\xc2\xb2", b"1048577"],
                         ids=["60000 nines", "zeros then 2", "superscript two", "cap + 1"])
def test_an_odd_content_length_is_a_typed_error(raw_server, length):
    # int() of 60000 digits raises ValueError on Python 3.11+ (and is slow before);
    # "²".isdigit() is True but int("²") fails.
    def serve(server, conn, head):
        conn.sendall(JSON_HEAD + b"Content-Length: " + length + b"\r\nConnection: close\r\n"
                     b"\r\n{}")

    server = raw_server(serve)
    try:
        response = RequestsTransport(timeout=5)(HttpRequest.get_json(server.url + "/m"))
    except (ProtocolError, TransportError):
        pass
    else:
        # A length that is 2 in the end, or no number at all (then ignored), is usable.
        assert length in (b"0" * 60000 + b"2", b"\xc2\xb2") and response.body == b"{}"


# MCPClient reads its replies (a JSON body or an SSE stream) through the same bounded
# decoder: the reply's byte cap counts inflated bytes, and no read inflates a whole
# compressed read at once.
_MEASURE_MCP = textwrap.dedent("""
    import resource, sys, tracemalloc
    from mcpauth import MCPClient
    from mcpauth.errors import ProtocolError

    def peak_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    def call(path):
        client = MCPClient(sys.argv[1] + path, protocol_version="2026-07-28",
                           allow_insecure_http=True, max_response_bytes=1024 * 1024)
        try:
            client.request("tools/list")
        except ProtocolError as exc:
            return str(exc)
        finally:
            client.close()
        raise SystemExit("the reply was not refused")

    call("/warm")  # imports, a compressed reply that is no JSON-RPC response
    before = peak_kib()
    tracemalloc.start()
    message = call("/bomb")
    traced = tracemalloc.get_traced_memory()[1] // 1024
    assert "byte limit" in message, message
    print(peak_kib() - before, traced)
""")


@e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
@pytest.mark.parametrize("media", [b"application/json", b"text/event-stream"])
def test_an_mcp_reply_bomb_under_the_cap_costs_little_memory(raw_server, media):
    bomb = _bomb(b"gzip", 1000 * 1024 * 1024)  # 1000 MiB inflated, under 1 MiB on the wire
    if media == b"text/event-stream":
        warm = b'event: message\ndata: {"jsonrpc": "2.0"}\n\n'
    else:
        warm = b"{}"

    def serve(server, conn, head):
        payload = bomb if head.startswith(b"POST /bomb ") else gzip.compress(warm)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + media + b"\r\nContent-Encoding: "
                     b"gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(payload)
                     + payload)

    grew_kib, traced_kib = _measured(_MEASURE_MCP, raw_server(serve).url)
    # The 1 MiB cap plus a few 64 KiB steps; reading with iter_content on urllib3 1.24
    # inflated each 64 KiB read whole (64 MiB and more).
    assert grew_kib < 16 * 1024, grew_kib
    assert traced_kib < 4 * 1024, traced_kib


@e2e
@pytest.mark.parametrize("media", [b"application/json", b"text/event-stream"])
def test_a_compressed_mcp_reply_is_decoded(raw_server, media):
    message = b'{"jsonrpc": "2.0", "id": 1, "result": {"tools": [], "n": "' + b"x" * 200000 \
        + b'"}}'
    body = b"event: message\ndata: " + message + b"\n\n" if media == b"text/event-stream" \
        else message

    def serve(server, conn, head):
        payload = gzip.compress(body)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + media + b"\r\nContent-Encoding: "
                     b"gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(payload)
                     + payload)

    server = raw_server(serve)
    with mcpauth.MCPClient(server.url + "/mcp", protocol_version="2026-07-28",
                           allow_insecure_http=True) as client:
        assert len(client.request("tools/list")["n"]) == 200000
