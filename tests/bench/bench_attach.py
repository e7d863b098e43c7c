"""Attach a cached token: the auth step alone, and a full keep-alive loopback request.

Run: ``python tests/bench/bench_attach.py [--smoke]``. Floors (same run): an ``AuthBase``
that only sets the header, and one that sets it, checks expiry without a lock and
registers a 401 hook (what a refreshing auth must do at least). Peers: Authlib's
``OAuth2Auth``, requests-oauthlib's ``OAuth2``, google-auth's ``before_request``, msal's
``acquire_token_for_client`` from its cache (msal has no requests auth: + the header).
The official ``mcp`` SDK authenticates httpx, not requests: no row here.
"""

import os
import time

os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # loopback http, for requests-oauthlib

from _harness import SMOKE, peer, round_robin, round_robin_fresh, table, versions

import requests

from mcpauth import BearerTokenProvider, ClientCredentialsProvider, PrivateKeyJwtProvider, jws
from mcpauth.testing import LoopbackStack


class HeaderOnly(requests.auth.AuthBase):
    def __init__(self, token):
        self.value = "Bearer " + token

    def __call__(self, r):
        r.headers["Authorization"] = self.value
        return r


class Floor(requests.auth.AuthBase):
    """Header + lock-free expiry check + 401 hook: the least a refreshing auth does."""

    def __init__(self, token, expires_at):
        self.record = ("Bearer " + token, expires_at)

    def __call__(self, r):
        value, expires_at = self.record
        if time.time() >= expires_at:
            raise RuntimeError("expired")
        r.headers["Authorization"] = value
        r.hooks["response"].append(self.on_response)
        return r

    def on_response(self, r, **kwargs):
        return r


def peers_attach(token, expires_at):
    cases = []
    authlib_rc = peer("authlib.integrations.requests_client")
    if authlib_rc is not None:
        auth = authlib_rc.OAuth2Auth({"access_token": token, "token_type": "Bearer",
                                      "expires_at": int(expires_at)})
        cases.append(("Authlib OAuth2Auth", auth))
    roauth = peer("requests_oauthlib")
    if roauth is not None:
        auth = roauth.OAuth2(client_id="bench", token={"access_token": token,
                                                       "token_type": "Bearer"})
        cases.append(("requests-oauthlib OAuth2", auth))
    gcreds = peer("google.oauth2.credentials")
    if gcreds is not None:
        import datetime
        expiry = datetime.datetime.utcfromtimestamp(expires_at)
        creds = gcreds.Credentials(token, expiry=expiry)

        def google(r, creds=creds):
            creds.before_request(None, r.method, r.url, r.headers)
            return r
        cases.append(("google-auth Credentials.before_request", google))
    return cases


def msal_case(stack):
    msal = peer("msal")
    if msal is None:
        return []
    try:  # msal discovers its authority at construction: the loopback AS (OIDC metadata)
        app = msal.ConfidentialClientApplication(
            stack.client_id, client_credential=stack.client_secret,
            oidc_authority=stack.issuer)
        app.acquire_token_for_client(["bench/.default"])
    except Exception as exc:
        print("  (msal skipped: %s)" % type(exc).__name__)
        return []

    def attach(r):
        result = app.acquire_token_for_client(["bench/.default"])
        r.headers["Authorization"] = "Bearer " + result["access_token"]
        return r
    if "access_token" not in app.acquire_token_for_client(["bench/.default"]):
        return []
    return [("msal acquire_token_for_client (cached) + header", attach)]


def main():
    print("attach a cached token; " + versions())
    key = jws.generate_private_key("RSA", key_size=2048)
    with LoopbackStack(public_jwk=key.public_jwk()) as stack:
        secret = ClientCredentialsProvider(stack.client_id, stack.client_secret,
                                           server_url=stack.mcp_url)
        keyed = PrivateKeyJwtProvider(stack.client_id, key, server_url=stack.mcp_url)
        token = secret.token()
        keyed.token()
        bearer = BearerTokenProvider(token)
        expires_at = time.time() + 3600
        req = requests.Request("POST", stack.mcp_url, data=b"{}",
                               headers={"Content-Type": "application/json"}).prepare()
        # Each call gets a fresh PreparedRequest (copy() is timed in every row alike).
        auths = [("floor: header only", HeaderOnly(token)),
                 ("floor: header + expiry + 401 hook", Floor(token, expires_at)),
                 ("mcpauth ClientCredentialsProvider", secret),
                 ("mcpauth PrivateKeyJwtProvider", keyed),
                 ("mcpauth BearerTokenProvider", bearer)]
        auths += peers_attach(token, expires_at) + msal_case(stack)
        for _, auth in auths:  # the first call may do one-off work (discovery memo)
            auth(req.copy())
        results = round_robin_fresh(auths, req.copy, 2000)
        table("Auth step alone (each call on a fresh PreparedRequest, made untimed)",
              results, "floor: header + expiry + 401 hook")

        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": "2025-11-25"}
        sessions = []
        for name, auth in auths[1:3] + auths[4:5]:
            session = requests.Session()
            session.auth = auth
            session.post(stack.mcp_url, json=body, headers=headers)
            sessions.append((name, session))
        results = round_robin([(name, lambda s=s: s.post(stack.mcp_url, json=body,
                                                          headers=headers))
                               for name, s in sessions], 50 if not SMOKE else 1, rounds=11)
        table("Full keep-alive loopback POST (requests.Session, same server)", results,
              "floor: header + expiry + 401 hook")
        for _, s in sessions:
            s.close()


if __name__ == "__main__":
    main()
