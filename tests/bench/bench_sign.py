"""Sign one ``private_key_jwt`` client assertion (RFC 7523 §3): RS256, ES256, EdDSA.

Run: ``python tests/bench/bench_sign.py [--smoke]``. The floor is a hand-written JWT on
``cryptography`` with the key already loaded: the same claims (iss, sub, aud, iat, exp,
a random jti), compact JSON, base64url, one signature (ECDSA converted from DER to
R||S). Peers: PyJWT (``jwt.encode``, which msal uses for its assertions), Authlib
(``authlib.jose.jwt``), google-auth (``google.auth.jwt.encode``), each with its key
loaded once.
"""

import base64
import json
import secrets
import time

from _harness import peer, round_robin, table, versions

from mcpauth import jws
from mcpauth.grants import PrivateKeyJwt

AUD = "https://as.example.com"
CLIENT = "bench-client"


def claims():
    now = int(time.time())
    return {"iss": CLIENT, "sub": CLIENT, "aud": AUD, "iat": now, "exp": now + 300,
            "jti": secrets.token_urlsafe(24)}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def floor_signer(alg, key):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    header = b64(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())

    if alg == "RS256":
        def sign(data):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        def sign(data):
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sign = key.sign

    def floor():
        signing_input = header + b"." + b64(json.dumps(claims(), separators=(",", ":"))
                                            .encode())
        return (signing_input + b"." + b64(sign(signing_input))).decode("ascii")
    return floor


def pem_of(key):
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def peer_cases(alg, key):
    cases = []
    pyjwt = peer("jwt")
    if pyjwt is not None:
        cases.append(("PyJWT jwt.encode (msal's signer)",
                      lambda: pyjwt.encode(claims(), key, algorithm=alg)))
    ajwt = peer("authlib.jose")
    if ajwt is not None:
        from authlib.jose import JsonWebKey
        akey = JsonWebKey.import_key(pem_of(key).decode(), {"kty": {"RS256": "RSA",
                                     "ES256": "EC", "EdDSA": "OKP"}[alg]})
        cases.append(("Authlib authlib.jose.jwt.encode",
                      lambda: ajwt.jwt.encode({"alg": alg}, claims(), akey)))
    gcrypt = peer("google.auth.crypt")
    gjwt = peer("google.auth.jwt")
    if gcrypt is not None and gjwt is not None and alg in ("RS256", "ES256"):
        cls = gcrypt.RSASigner if alg == "RS256" else gcrypt.ES256Signer
        signer = cls.from_string(pem_of(key))
        cases.append(("google-auth google.auth.jwt.encode",
                      lambda: gjwt.encode(signer, claims())))
    return cases


def main():
    print("client assertion signing; " + versions())
    for alg, kty, kw in (("RS256", "RSA", {"key_size": 2048}), ("ES256", "EC", {"curve": "P-256"}),
                         ("EdDSA", "OKP", {})):
        key = jws.generate_private_key(kty, **kw)
        raw = key._key  # the cryptography key object, for the floor and the peers
        auth = PrivateKeyJwt(CLIENT, key, alg)
        cases = [("floor: hand-written JWT on cryptography", floor_signer(alg, raw)),
                 ("mcpauth PrivateKeyJwt.build_assertion",
                  lambda auth=auth: auth.build_assertion(AUD, AUD + "/token")),
                 ("mcpauth jws.sign(claims, key)",
                  lambda key=key, alg=alg: jws.sign(claims(), key, alg, headers={"typ": "JWT"}))]
        cases += peer_cases(alg, raw)
        number = 20 if alg == "RS256" else 200
        table("%s assertion (per assertion)" % alg, round_robin(cases, number, rounds=21),
              "floor: hand-written JWT on cryptography")


if __name__ == "__main__":
    main()
