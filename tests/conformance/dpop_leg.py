"""The conformance client's part for ``auth/dpop`` and ``auth/dpop-nonce`` (SEP-1932).

Those two scenarios record the token-request proof only for ``grant_type=
authorization_code``, a flow mcpauth (machine to machine) does not run. So this test code
runs that leg itself, headless, as /work/shared/CONFORMANCE.md §5 describes: discovery
with :func:`mcpauth.discovery.discover`, dynamic client registration, the authorization
request with PKCE S256 and ``resource`` (the mock answers 302 at once; the ``iss`` it
returns is checked, RFC 9207), then the token request through
:func:`mcpauth.grants.request_token` with ``dpop=``, so the proof, the nonce retry (RFC 9449
§8) and the ``token_type`` check are the library's. The MCP requests then go through
:class:`mcpauth.BearerTokenProvider` with ``dpop_key=``: the ``DPoP`` scheme, a proof per
request and the resource server's nonce (§7.1, §9), again the library's. Every proof sent
comes from mcpauth's public DPoP API (:class:`mcpauth.dpop.DPoPKey`).
"""

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from mcpauth import BearerTokenProvider, MCPAuthError
from mcpauth.discovery import discover
from mcpauth.dpop import DPoPKey, NonceStore
from mcpauth.grants import ClientSecretBasic, NoClientAuth, request_token
from mcpauth.transport import RequestsTransport

SCENARIOS = ("auth/dpop", "auth/dpop-nonce")
REDIRECT_URI = "http://localhost:3000/callback"


class LegError(MCPAuthError):
    """The authorization_code leg failed (exit 2 in client.py, like any refusal)."""


def provider_for(url: str, timeout: float = 10.0) -> Any:
    """Run the authorization_code leg with a DPoP key; return the provider for MCP."""
    transport = RequestsTransport(timeout=timeout)
    found = discover(transport, url)
    metadata = found.metadata.raw
    key = DPoPKey.generate()
    algorithm = key.algorithm_for(metadata.get("dpop_signing_alg_values_supported"))

    with requests.Session() as http:
        registration = http.post(metadata["registration_endpoint"], timeout=timeout, json={
            "client_name": "mcpauth-conformance-client", "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code"], "response_types": ["code"],
            "application_type": "native"})
        if registration.status_code not in (200, 201):
            raise LegError("registration failed: HTTP %d" % registration.status_code)
        client = registration.json()
        verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        answer = http.get(metadata["authorization_endpoint"], allow_redirects=False,
                          timeout=timeout, params={
                              "response_type": "code", "client_id": client["client_id"],
                              "redirect_uri": REDIRECT_URI, "state": state,
                              "code_challenge": challenge, "code_challenge_method": "S256",
                              "resource": found.resource})
    location = answer.headers.get("Location", "")
    if answer.status_code not in (302, 303) or not location.startswith(REDIRECT_URI):
        raise LegError("the authorization endpoint did not redirect back")
    query = parse_qs(urlsplit(location).query)
    if query.get("state") != [state]:
        raise LegError("the authorization response's state does not match")
    if "iss" in query and query["iss"] != [found.issuer]:
        raise LegError("the authorization response's iss is not the issuer (RFC 9207)")
    if metadata.get("authorization_response_iss_parameter_supported") and "iss" not in query:
        raise LegError("the authorization response lacks iss (RFC 9207)")
    client_auth = (ClientSecretBasic(client["client_id"], client["client_secret"])
                   if client.get("client_secret") else NoClientAuth(client["client_id"]))
    token = request_token(
        transport, found.metadata.token_endpoint,
        [("grant_type", "authorization_code"), ("code", query["code"][0]),
         ("redirect_uri", REDIRECT_URI), ("code_verifier", verifier),
         ("resource", found.resource)],
        client_auth, issuer=found.issuer, dpop=key, dpop_algorithm=algorithm,
        dpop_nonces=NonceStore())
    return BearerTokenProvider(token.access_token, server_url=url, dpop_key=DPoPKey(
        key, algorithm))
