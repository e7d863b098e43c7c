"""``mcpauth demo``: every flow, end to end, against loopback servers (no network).

Starts :mod:`mcpauth.testing`'s authorization server, enterprise IdP and protected MCP
server on ``127.0.0.1``, then runs each flow through the public API only, with an
:class:`~mcpauth.MCPClient` listing the tools and calling ``add``:

1. client secret: :class:`~mcpauth.ClientCredentialsProvider` (RFC 6749 §4.4, §2.3.1)
2. private key JWT: :class:`~mcpauth.PrivateKeyJwtProvider` (RFC 7523 §2.2)
3. bring your own token: :class:`~mcpauth.BearerTokenProvider` (RFC 6750 §2.1)
4. cross-app access: :class:`~mcpauth.CrossAppAccessProvider` (RFC 8693 at the IdP,
   then RFC 7523 §2.1 with the ID-JAG)
5. workload identity: :class:`~mcpauth.WorkloadIdentityProvider` (RFC 7523 §2.1 with
   a platform JWT)

and then shows :class:`~mcpauth.cache.FileTokenCache` giving a second run its token
without a token request. Each flow prints the HTTP requests the loopback servers
received (method, path, grant type, client authentication, JSON-RPC method, status);
no secret, token or assertion is ever printed.

Without ``cryptography`` the flows that sign (2, 4, 5) are skipped with a note and the
demo still exits 0: everything that can run did.
"""

import os
import shutil
import tempfile
import time
from typing import Any, Callable, List, Optional, TextIO, Tuple

from . import __version__

__all__ = ["run_demo"]

_CRYPTO_FLOWS = ("private key JWT", "cross-app access", "workload identity")
_WORKLOAD_ISSUER = "https://workload-platform.demo.invalid"
_WORKLOAD_SUBJECT = "system:serviceaccount:reports:nightly-job"


def _have_cryptography() -> bool:
    from ._compat import require_cryptography
    from .errors import MissingDependencyError

    try:
        require_cryptography()
    except MissingDependencyError:
        return False
    return True


def _short(value: Optional[str]) -> str:
    """The last part of a URN (``...:grant-type:jwt-bearer`` -> ``jwt-bearer``)."""
    if value and value.startswith("urn:"):
        return value.rsplit(":", 1)[-1]
    return value or "-"


class _Trace(object):
    """Prints what the loopback servers received since the last call, oldest first."""

    def __init__(self, stack: Any, out: TextIO) -> None:
        self.servers = [("AS ", stack.as_), ("MCP", stack.mcp)]
        if stack.idp is not None:
            self.servers.insert(0, ("IdP", stack.idp))
        self.seen = dict((name, 0) for name, _ in self.servers)
        self.out = out

    def mark(self) -> None:
        for name, server in self.servers:
            self.seen[name] = len(server.requests)

    def count(self) -> int:
        return sum(len(server.requests) - self.seen[name] for name, server in self.servers)

    def show(self) -> None:
        new = []  # type: List[Tuple[float, str, Any]]
        for name, server in self.servers:
            records = server.requests
            new.extend((r.time, name, r) for r in records[self.seen[name]:])
            self.seen[name] = len(records)
        for _, name, record in sorted(new, key=lambda item: item[0]):
            info = record.info
            what = []
            if info.get("grant_type"):
                what.append("grant_type=" + _short(info["grant_type"]))
            if info.get("auth_method"):
                what.append("client auth " + info["auth_method"])
            if info.get("assertion_kind"):
                what.append(info["assertion_kind"] + " assertion")
            if info.get("requested_token_type"):
                what.append("requested " + _short(info["requested_token_type"]))
            if info.get("jsonrpc_method"):
                what.append(str(info["jsonrpc_method"]))
            if info.get("error"):
                what.append("error=" + str(info["error"]))
            if name == "MCP" and record.method == "POST" \
                    and not record.headers.get("Authorization"):
                what.append("no token yet: the challenge names the metadata")
            line = "     {}  {:<4} {:<42} {:>3}  {}".format(
                name, record.method, record.url_path, record.status, ", ".join(what))
            self.out.write(line.rstrip() + "\n")


def _use_server(client_cls: Any, url: str, auth: Any) -> List[str]:
    """List the tools and call ``add``; raise if the answers are not the expected ones."""
    with client_cls(url, auth=auth) as client:
        tools = client.list_tools()
        names = sorted(str(t.get("name")) for t in tools if isinstance(t, dict))
        if "add" not in names:
            raise RuntimeError("tools/list did not include 'add'")
        result = client.call_tool("add", {"a": 2, "b": 3})
        version = client.protocol_version
    texts = [c.get("text") for c in result.get("content", []) if isinstance(c, dict)]
    if result.get("isError") or texts != ["5"]:
        raise RuntimeError("tools/call add(a=2, b=3) did not return 5")
    return ["tools: {}; add(a=2, b=3) = 5 (MCP protocol {})".format(
        ", ".join(names), version)]


def run_demo(out: TextIO) -> int:
    """Run the demo, writing a readable account to ``out``.

    Returns:
        0 when every flow that could run passed, 1 otherwise.
    """
    from .testing import LoopbackStack

    crypto = _have_cryptography()
    started = time.monotonic()
    stack = LoopbackStack(client_id="demo-client", idp=crypto,
                          idp_client_id="demo-idp-client")
    tmpdir = tempfile.mkdtemp(prefix="mcpauth-demo-")
    results = []  # type: List[Tuple[str, Optional[str]]]
    try:
        stack.start()
        out.write("mcpauth demo: every flow against loopback servers (no network needed)\n")
        # Which copy runs: the installed one, a vendored one or a source tree.
        out.write("   {:<22}{}\n".format("mcpauth " + __version__,
                                      os.path.dirname(os.path.abspath(__file__))))
        out.write("   authorization server  {}\n".format(stack.issuer))
        if stack.idp is not None:
            out.write("   enterprise IdP        {}\n".format(stack.idp.issuer))
        out.write("   MCP server            {}\n".format(stack.mcp_url))
        trace = _Trace(stack, out)
        flows = _flows(stack, tmpdir, crypto)
        for number, (title, explain, flow) in enumerate(flows, 1):
            out.write("\n{}. {}\n".format(number, title))
            for line in explain:
                out.write("   " + line + "\n")
            trace.mark()
            try:
                lines = flow(out, trace)
            except Exception as exc:  # report every flow, then fail the run
                trace.show()
                out.write("   FAILED: {}: {}\n".format(type(exc).__name__, exc))
                results.append((title, "{}: {}".format(type(exc).__name__, exc)))
                continue
            trace.show()
            for line in lines:
                out.write("   " + line + "\n")
            out.write("   ok\n")
            results.append((title, None))
    finally:
        stack.stop()
        shutil.rmtree(tmpdir, ignore_errors=True)
    failed = [title for title, problem in results if problem is not None]
    out.write("\n")
    if not crypto:
        out.write("skipped (they sign JWTs and need the cryptography package): {}\n".format(
            ", ".join(_CRYPTO_FLOWS)))
    elapsed = time.monotonic() - started
    if failed:
        out.write("demo: {} of {} flows FAILED: {} ({:.1f} s)\n".format(
            len(failed), len(results), ", ".join(failed), elapsed))
        return 1
    out.write("demo: all {} flows passed ({:.1f} s)\n".format(len(results), elapsed))
    return 0


Flow = Callable[[TextIO, _Trace], List[str]]


def _flows(stack: Any, tmpdir: str, crypto: bool) -> List[Tuple[str, List[str], Flow]]:
    # The public API, imported from its modules (works whatever the package exports).
    from . import jws
    from .filecache import FileTokenCache
    from .client import LATEST_PROTOCOL_VERSION, MCPClient
    from .crossapp import CrossAppAccessProvider, discover_and_request_jwt_auth_grant
    from .providers import (BearerTokenProvider, ClientCredentialsProvider,
                            PrivateKeyJwtProvider)
    from .workload import WorkloadIdentityProvider

    url = stack.mcp_url
    flows = []  # type: List[Tuple[str, List[str], Flow]]

    def client_secret(out: TextIO, trace: _Trace) -> List[str]:
        provider = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                             expected_issuer=stack.issuer)
        return _use_server(MCPClient, url, provider)

    flows.append(("Client secret: ClientCredentialsProvider", [
        "client_credentials grant (RFC 6749 4.4); the first request has no token, the",
        "401 names the metadata (RFC 9728), the token is bound to the server (RFC 8707)"],
        client_secret))

    if crypto:
        key = jws.generate_private_key("EC")
        stack.as_.register_client("demo-jwt-client", public_jwk=key.public_jwk(),
                                  auth_method="private_key_jwt")

        def private_key_jwt(out: TextIO, trace: _Trace) -> List[str]:
            provider = PrivateKeyJwtProvider("demo-jwt-client", key,
                                             key_id=jws.jwk_thumbprint(key),
                                             expected_issuer=stack.issuer)
            return _use_server(MCPClient, url, provider)

        flows.append(("Private key JWT: PrivateKeyJwtProvider", [
            "client_credentials with a signed ES256 client assertion (RFC 7523 2.2);",
            "the authorization server holds only the public key"], private_key_jwt))

    def bring_your_own(out: TextIO, trace: _Trace) -> List[str]:
        # A token from somewhere else (a gateway, a secret store); minted here in-process.
        token = stack.as_.issue_token(client_id="gateway", resource=stack.mcp.resource)
        return _use_server(MCPClient, url, BearerTokenProvider(lambda: token))

    flows.append(("Bring your own token: BearerTokenProvider", [
        "a token obtained elsewhere, sent as Authorization: Bearer (RFC 6750 2.1);",
        "no discovery and no token request"], bring_your_own))

    if crypto:
        id_token = stack.id_token("alice@example.com")
        idp_client = stack.idp_client

        def assertion(ctx: Any) -> str:
            grant = discover_and_request_jwt_auth_grant(
                stack.idp.issuer, id_token, ctx.authorization_server_url, ctx.resource_url,
                idp_client.client_id, idp_client.client_secret, scope=ctx.scope,
                session=ctx.session)
            return str(grant.jwt_auth_grant)

        def cross_app(out: TextIO, trace: _Trace) -> List[str]:
            provider = CrossAppAccessProvider(assertion, stack.client_id,
                                              stack.client_secret,
                                              expected_issuer=stack.issuer)
            return _use_server(MCPClient, url, provider)

        flows.append(("Cross-app access: CrossAppAccessProvider", [
            "alice's ID token -> ID-JAG at the IdP (RFC 8693 token exchange) -> access",
            "token at the MCP server's authorization server (RFC 7523 2.1 jwt-bearer)"],
            cross_app))

        platform_key = jws.generate_private_key("EC")
        stack.as_.trust_workload_issuer(_WORKLOAD_ISSUER, platform_key.public_jwk(),
                                        allowed_subjects=[_WORKLOAD_SUBJECT])

        def platform_token() -> str:
            # What the platform (Kubernetes, CI) would mount: a short-lived JWT.
            now = int(time.time())
            return jws.sign({"iss": _WORKLOAD_ISSUER, "sub": _WORKLOAD_SUBJECT,
                             "aud": stack.issuer, "iat": now, "exp": now + 300,
                             "jti": os.urandom(8).hex()},
                            platform_key, headers={"typ": "JWT"})

        def workload(out: TextIO, trace: _Trace) -> List[str]:
            provider = WorkloadIdentityProvider(platform_token, expected_issuer=stack.issuer)
            return _use_server(MCPClient, url, provider)

        flows.append(("Workload identity: WorkloadIdentityProvider", [
            "the platform's JWT for {} is the grant (RFC 7523 2.1);".format(
                _WORKLOAD_SUBJECT),
            "no client secret at all"], workload))

    cache_path = os.path.join(tmpdir, "tokens.json")

    def cached(out: TextIO, trace: _Trace) -> List[str]:
        first = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                          expected_issuer=stack.issuer, server_url=url,
                                          cache=FileTokenCache(cache_path))
        first.token()
        out.write("   first run: discovery and one token request, saved in {}\n".format(
            os.path.basename(cache_path)))
        trace.show()
        before = len(stack.as_.token_requests())
        trace.mark()
        second = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                           expected_issuer=stack.issuer,
                                           cache=FileTokenCache(cache_path))
        # A known 2026-07-28 server needs no handshake (mcpauth call remembers this).
        with MCPClient(url, auth=second, protocol_version=LATEST_PROTOCOL_VERSION) as client:
            result = client.call_tool("add", {"a": 2, "b": 3})
        requests_made = trace.count()
        if len(stack.as_.token_requests()) != before or result.get("isError"):
            raise RuntimeError("the second run did not use the cached token")
        out.write("   second run (a new provider and cache object, as in a new process): "
                  "{} HTTP request{}, no token request\n".format(
                      requests_made, "" if requests_made == 1 else "s"))
        return []

    flows.append(("Token cache across runs: FileTokenCache", [
        "a cron job's second run reads the token and discovery results from a 0600 file"],
        cached))
    return flows
