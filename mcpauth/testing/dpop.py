"""DPoP proof checking shared by the test authorization server and MCP server (RFC 9449).

Every §4.3 rule is enforced, strictly enough to catch a client that gets one wrong:
exactly one ``DPoP`` header; a compact JWS with ``typ`` ``dpop+jwt``, an asymmetric
``alg`` and a public ``jwk`` that verifies the signature; ``htm`` and ``htu`` equal to
the request's method and URI (after RFC 3986 normalisation, without query and fragment);
``iat`` within the window; ``jti`` never seen before; ``ath`` for the token presented;
the server's current ``nonce`` when one is set (§8, §9); and, for a bound token, a key
whose thumbprint is the token's ``cnf.jkt`` (§6).
"""

import secrets
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..dpop import DPoPProofError, verify_proof
from ._http import RecordedRequest

__all__ = ["DPoPChecker"]


class DPoPChecker(object):
    """Checks proofs for one server.

    Knobs (attributes): ``nonce`` (None: no nonce required; else the value a proof must
    carry, announced in ``DPoP-Nonce``), ``rotate_nonce`` (a new nonce after every
    accepted proof, announced on that response: clients must switch to it, §8.2),
    ``max_age`` (seconds an ``iat`` may lie in the past), ``leeway`` (in the future),
    ``algorithms`` (accepted ``alg`` values), ``require_content_digest`` (proofs with
    an access token must carry ``content_digest``; one that is present is always checked
    against the body, SEP-1932).
    """

    def __init__(self, clock: Optional[Callable[[], float]] = None) -> None:
        self.clock: Callable[[], float] = clock or time.time
        self.nonce: Optional[str] = None
        self.rotate_nonce = False
        self.max_age = 300.0
        self.leeway = 5.0
        self.require_content_digest = False
        self.algorithms = ("ES256", "EdDSA", "ES384", "ES512", "PS256", "RS256",
                           "PS384", "PS512", "RS384", "RS512")
        self._seen: Dict[str, float] = {}
        self._lock = threading.Lock()
        self.accepted: int = 0

    def check(self, record: RecordedRequest, url: str, access_token: Optional[str] = None,
              jkt: Optional[str] = None, body: Optional[bytes] = None) -> Dict[str, Any]:
        """Check the request's proof; return its claims (with ``jkt``).

        Raises:
            DPoPProofError: with ``error`` ``invalid_dpop_proof``, ``use_dpop_nonce`` or
                ``invalid_token`` (wrong key for a bound token).
        """
        proofs = record.headers.get_all("DPoP")
        if len(proofs) != 1:
            raise DPoPProofError("exactly one DPoP header is required (RFC 9449 §4.3)")
        now = self.clock()
        with self._lock:
            nonce = self.nonce
        claims = verify_proof(proofs[0], record.method, url, access_token=access_token,
                              nonce=nonce, jkt=jkt, algorithms=self.algorithms, now=now,
                              max_age=self.max_age, leeway=self.leeway, body=body)
        with self._lock:
            # Replay: a jti is accepted once while its iat is inside the window.
            for old in [j for j, t in self._seen.items() if t < now - self.max_age]:
                del self._seen[old]
            if claims["jti"] in self._seen:
                raise DPoPProofError("the DPoP proof's jti was already used")
            self._seen[claims["jti"]] = float(claims["iat"])
            self.accepted += 1
            if self.rotate_nonce and self.nonce is not None:
                self.nonce = "n-" + secrets.token_urlsafe(12)
        record.info["dpop_jkt"] = claims["jkt"]
        record.info["dpop_claims"] = claims
        return claims

    @staticmethod
    def peek_claims(record: RecordedRequest) -> Optional[Dict[str, Any]]:
        """The unverified claims of the request's proof, or None."""
        from .. import jws

        proof = record.headers.get("DPoP")
        try:
            return jws.decode_unverified(proof)[1] if proof else None
        except ValueError:
            return None

    def nonce_headers(self) -> List[Tuple[str, str]]:
        """``DPoP-Nonce`` for a response, when a nonce is in force."""
        with self._lock:
            return [("DPoP-Nonce", self.nonce)] if self.nonce is not None else []
