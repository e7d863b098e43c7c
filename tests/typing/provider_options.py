"""Checked by ``mypy --strict`` (``tox -e typing``), never run.

Each ``type: ignore[...]`` below marks a mistake the providers' signatures must let a
type checker catch; under ``--strict`` (``--warn-unused-ignores``) an ignore that is not
needed is itself an error, so a signature that swallowed the mistake (``**options:
Any``) fails the check.
"""

from mcpauth import ClientCredentialsProvider, PrivateKeyJwtProvider
from mcpauth.cache import FileTokenCache
from mcpauth.crossapp import CrossAppAccessProvider
from mcpauth.workload import WorkloadIdentityProvider


def mistakes() -> None:
    ClientCredentialsProvider("cid", "secret", timeot=3)  # type: ignore[call-arg]
    ClientCredentialsProvider("cid", "secret", cache="x")  # type: ignore[arg-type]
    ClientCredentialsProvider("cid", "secret", timeout="3")  # type: ignore[arg-type]
    PrivateKeyJwtProvider("cid", b"pem", timeot=3)  # type: ignore[call-arg]
    PrivateKeyJwtProvider("cid", signer="kms")  # type: ignore[arg-type]
    CrossAppAccessProvider(lambda ctx: "x", "cid", "s", timeot=3)  # type: ignore[call-arg]
    WorkloadIdentityProvider("/path", timeot=3)  # type: ignore[call-arg]


def correct() -> None:
    ClientCredentialsProvider("cid", "secret", timeout=3, scope="a b",
                              cache=FileTokenCache("~/.cache/mcpauth/tokens.json"))
    PrivateKeyJwtProvider("cid", signer=lambda data: data, algorithm="ES256")
    PrivateKeyJwtProvider("cid", assertion=lambda audience: audience)
