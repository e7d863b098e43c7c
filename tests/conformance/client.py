#!/usr/bin/env python3
"""mcpauth as a client under test for the official MCP conformance suite.

Written only against mcpauth's public API (the providers and :class:`mcpauth.MCPClient`),
the way a user's program would be. The suite runs it as ``<python> client.py <server-url>``
with these environment variables (the suite's runner contract):

* ``MCP_CONFORMANCE_SCENARIO``: the scenario name;
* ``MCP_CONFORMANCE_PROTOCOL_VERSION``: the wire to speak: ``2025-11-25`` (stateful:
  initialize, then requests) or ``2026-07-28`` (stateless);
* ``MCP_CONFORMANCE_CONTEXT``: JSON with the scenario's credentials, when it has any.

What it does per scenario:

* ``auth/client-credentials-basic``: :class:`~mcpauth.ClientCredentialsProvider` with the
  context's id and secret (client_secret_basic, chosen from the AS metadata).
* ``auth/client-credentials-jwt``: :class:`~mcpauth.PrivateKeyJwtProvider` with the
  context's PKCS#8 PEM and ``signing_algorithm`` (RFC 7523 §2.2).
* ``auth/enterprise-managed-authorization``: :class:`~mcpauth.CrossAppAccessProvider`; its
  assertion callback asks the IdP for an ID-JAG with
  :func:`mcpauth.request_jwt_authorization_grant` (RFC 8693), audience = the AS
  issuer and resource = the PRM resource, both from mcpauth's discovery.
* ``auth/wif-jwt-bearer``: :class:`~mcpauth.WorkloadIdentityProvider` presenting
  ``valid_jwt`` (RFC 7523 §2.1).
* ``auth/pre-registration``: the context's id and secret, pinned with
  ``expected_issuer`` = the context's ``issuer``.
* every other ``auth/*`` scenario (metadata-*, token-endpoint-auth-*, the mismatch and
  migration scenarios): dummy client credentials, since the mock AS accepts any; the
  strict defaults (exact issuer and resource matching) and no issuer pin.
  ``auth/metadata-var2`` publishes a pathless PRM ``resource`` (the origin of the MCP URL),
  which mcpauth accepts only with ``allow_resource_prefix=True``, so that is set there.
  ``auth/authorization-server-migration`` moves the client to a second authorization
  server; mcpauth binds credentials to the first one unless ``allow_issuer_change=True``,
  so that is set there (without it mcpauth refuses, as SEP-2352 asks of pre-registered
  credentials).
* ``auth/dpop``, ``auth/dpop-nonce``: see ``dpop_leg.py`` (the authorization_code leg
  in test code; every DPoP proof from mcpauth's public DPoP API).
* every other scenario (the MCP wire ones): no auth.

Then it speaks MCP: connect (initialize on the stateful wire), ``tools/list``, and the
calls the scenario asks for, all through :meth:`MCPClient.call_tool`:

* ``tools_call``: ``add_numbers`` with numbers;
* ``http-custom-headers``: each call in the context's ``toolCalls`` (the client mirrors
  the ``x-mcp-header`` arguments into ``Mcp-Param-*`` headers, SEP-2243);
* ``http-invalid-tool-headers``: every tool ``list_tools()`` returned (the client must
  have left out those with invalid ``x-mcp-header`` declarations);
* ``json-schema-2020-12-preservation``: ``json_schema_echo`` with the ``inputSchema`` of
  ``json_schema_2020_12_tool`` exactly as ``list_tools()`` returned it;
* ``json-schema-ref-no-deref``, ``request-metadata``: no call (listing is the test: the
  client must not fetch a network ``$ref``; it must retry after -32022);
* ``sse-retry``: ``test_reconnection``, whose SSE stream the server closes early (the
  client resumes it with GET and ``Last-Event-ID`` after the ``retry`` delay);
* any other: the first tool, with no arguments.

Exit status: 0 on success; 2 when mcpauth refuses (any :class:`mcpauth.MCPAuthError`
other than a JSON-RPC error), printing ``client: refused: <ErrorClass>: <message>`` to
stderr; 3 on a JSON-RPC error from the server; 1 on anything else (a crash).

``MCPAUTH_CONFORMANCE_BREAK`` (read here only, never by mcpauth) deliberately breaks the
build for the referee's own tests (tests/conformance/test_referee.py), by monkeypatching
mcpauth in this process: ``issuer`` skips the RFC 8414 §3.3 issuer check, ``resource``
skips the RFC 9728 §3.3 resource check, ``der`` makes ECDSA signatures DER instead of
JOSE R||S (RFC 7518 §3.4), ``mcp-param`` sends no ``Mcp-Param-*`` headers, ``exclusion``
keeps tools with invalid ``x-mcp-header`` declarations, ``resume`` never resumes a closed
SSE stream, ``version-retry`` never retries after -32022,
``dpop-bearer`` sends DPoP-bound tokens as Bearer tokens,
``dpop-nonce`` ignores every ``DPoP-Nonce`` (RFC 9449 §8, §9).
"""

import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

import mcpauth
from mcpauth import (
    ClientCredentialsProvider,
    CrossAppAccessProvider,
    MCPAuthError,
    MCPClient,
    MCPError,
    PrivateKeyJwtProvider,
    WorkloadIdentityProvider,
    request_jwt_authorization_grant,
)

import dpop_leg  # noqa: E402  (next to this script: auth/dpop and auth/dpop-nonce)

REFUSED = 2
SERVER_ERROR = 3
CLIENT_INFO = {"name": "mcpauth-conformance-client", "version": mcpauth.__version__}
DUMMY_CLIENT_ID = "mcpauth-conformance-client"
DUMMY_SECRET = "mcpauth-conformance-dummy-secret"


def read_context(scenario: str) -> Dict[str, Any]:
    raw = os.environ.get("MCP_CONFORMANCE_CONTEXT")
    if not raw:
        return {}
    context = json.loads(raw)
    # The suite never clears the variable, so only trust a context naming this scenario.
    if not isinstance(context, dict) or context.get("name") != scenario:
        return {}
    return context


def make_provider(scenario: str, context: Dict[str, Any]) -> Any:
    """The auth object a user would configure for this scenario, or None."""
    if not scenario.startswith("auth/"):
        return None
    expected_issuer = context.get("issuer")  # only pre-registration names its AS
    if scenario == "auth/client-credentials-jwt":
        return PrivateKeyJwtProvider(context["client_id"], context["private_key_pem"],
                                     context.get("signing_algorithm"),
                                     expected_issuer=expected_issuer)
    if scenario == "auth/enterprise-managed-authorization":
        def id_jag(ctx: Any) -> str:
            # Step 1 at the enterprise IdP (RFC 8693 token exchange for an ID-JAG).
            grant = request_jwt_authorization_grant(
                context["idp_token_endpoint"], context["idp_id_token"],
                audience=ctx.authorization_server_url, resource=ctx.resource_url,
                client_id=context["idp_client_id"], scope=ctx.scope, session=ctx.session)
            return grant.jwt_auth_grant

        return CrossAppAccessProvider(id_jag, context["client_id"], context["client_secret"],
                                      expected_issuer=expected_issuer)
    if scenario == "auth/wif-jwt-bearer":
        valid_jwt = context["valid_jwt"]
        return WorkloadIdentityProvider(lambda: valid_jwt, client_id=context.get("client_id"),
                                        expected_issuer=expected_issuer)
    if "client_id" in context and "client_secret" in context:
        return ClientCredentialsProvider(context["client_id"], context["client_secret"],
                                         expected_issuer=expected_issuer)
    return ClientCredentialsProvider(
        DUMMY_CLIENT_ID, DUMMY_SECRET,
        allow_resource_prefix=scenario == "auth/metadata-var2",
        # The scenario registers the client at both servers; mcpauth refuses to move
        # credentials to another authorization server unless told so (H1, SEP-2352).
        allow_issuer_change=scenario == "auth/authorization-server-migration")


def exercise(client: Any, scenario: str, context: Dict[str, Any]) -> List[str]:
    """connect, tools/list, the scenario's tool calls; returns a one-line summary's parts."""
    client.connect()
    tools = client.list_tools()
    names = [str(t.get("name")) for t in tools]
    done = ["wire=%s" % client.protocol_version, "tools=%s" % ",".join(names)]
    calls: List[Tuple[str, Dict[str, Any]]] = []
    if scenario == "tools_call":
        calls = [("add_numbers", {"a": 2, "b": 3})]
    elif scenario == "http-custom-headers":
        calls = [(c["name"], c.get("arguments") or {}) for c in context.get("toolCalls", [])]
    elif scenario == "http-invalid-tool-headers":
        calls = [(name, {"region": "us-west1"}) for name in names]
    elif scenario == "json-schema-2020-12-preservation":
        focal = [t for t in tools if t.get("name") == "json_schema_2020_12_tool"]
        calls = [("json_schema_echo", {"schema": focal[0]["inputSchema"]})] if focal else []
    elif scenario in ("json-schema-ref-no-deref", "request-metadata"):
        calls = []
    elif names:
        calls = [(names[0], {})]
    for name, arguments in calls:
        result = client.call_tool(name, arguments)
        if result.get("isError"):
            raise RuntimeError("tools/call %s returned isError: %r" % (name, result))
        done.append("called=%s" % name)
    return done


def break_build(kind: str) -> None:
    """Deliberately break mcpauth in this process only (for test_referee.py)."""
    from mcpauth import discovery, jws

    if kind == "issuer":
        original = discovery.parse_authorization_server_metadata

        def trusting(response: Any, issuer: str, **kwargs: Any) -> Any:
            try:
                named = json.loads(response.body.decode("utf-8")).get("issuer", issuer)
            except (ValueError, AttributeError):
                named = issuer
            return original(response, named, **kwargs)

        discovery.parse_authorization_server_metadata = trusting
    elif kind == "resource":
        discovery.validate_resource = lambda *args, **kwargs: None
    elif kind == "der":
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        original_sign = jws.SigningKey.sign

        def der_sign(self: Any, signing_input: bytes, algorithm: str) -> bytes:
            signature = original_sign(self, signing_input, algorithm)
            if not algorithm.startswith("ES"):
                return signature
            half = len(signature) // 2
            return encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                        int.from_bytes(signature[half:], "big"))

        jws.SigningKey.sign = der_sign
    elif kind == "mcp-param":
        import mcpauth._lifecycle
        mcpauth._lifecycle.param_headers = lambda bindings, arguments: {}  # type: ignore
    elif kind == "exclusion":
        import mcpauth.client
        mcpauth.client.header_bindings = lambda schema: ((), None)  # type: ignore
    elif kind == "resume":
        import mcpauth._wire
        mcpauth._wire.MAX_RESUMES = 0  # type: ignore
    elif kind == "version-retry":
        import mcpauth._lifecycle
        mcpauth._lifecycle.LifecycleMixin._choose_version = (  # type: ignore
            lambda self, data: None)
    elif kind == "dpop-bearer":
        from mcpauth import providers

        def bearer(self: Any, request: Any, token: str) -> None:
            request.headers["Authorization"] = "Bearer " + token

        providers.AuthProvider._apply = bearer  # type: ignore[method-assign]
    elif kind == "dpop-nonce":
        from mcpauth import dpop

        dpop.NonceStore.remember = lambda self, url, nonce: False  # type: ignore
    else:
        raise SystemExit("client: unknown MCPAUTH_CONFORMANCE_BREAK=%r" % kind)


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: client.py <mcp-server-url>", file=sys.stderr)
        return 1
    url = args[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    protocol_version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION") or None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="client: %(levelname)s %(name)s: %(message)s")
    if os.environ.get("MCPAUTH_CONFORMANCE_BREAK"):
        break_build(os.environ["MCPAUTH_CONFORMANCE_BREAK"])
    try:
        context = read_context(scenario)
        if scenario in dpop_leg.SCENARIOS:
            provider = dpop_leg.provider_for(url)  # the authorization_code leg, test code
        else:
            provider = make_provider(scenario, context)
        with MCPClient(url, auth=provider, protocol_version=protocol_version,
                       client_info=CLIENT_INFO) as client:
            done = exercise(client, scenario, context)
    except MCPError as exc:
        print("client: server error: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return SERVER_ERROR
    except MCPAuthError as exc:
        print("client: refused: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return REFUSED
    print("client: ok %s %s" % (scenario, " ".join(done)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
