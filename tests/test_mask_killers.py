"""Masking, tried with the encodings and overlaps a weaker masker would miss (each test
kills a mutant of mcpauth/_mask.py or of where it is applied; tests/mutation lists them).

Every credential mcpauth holds or obtained must be masked wherever peer text is shown,
in the forms a peer may echo it in: raw, form-encoded (RFC 6749 §2.3.1, spaces as
``+``), percent-encoded with either case of hex digits (RFC 3986 §2.1), JSON-escaped,
and for client secrets the Basic ``id:secret`` pair and its Base64 (RFC 7617 §2).
"""

import json
import logging
import re
from urllib.parse import quote, quote_plus

import pytest

from mcpauth import BearerTokenProvider, OAuthError
from mcpauth.grants import ClientSecretBasic

SECRET = 'pass word/with "quotes" \\ and ~ more'


def shown(exc):
    return str(exc) + repr(exc) + str(getattr(exc, "error_description", ""))


@pytest.mark.parametrize("form", [
    quote_plus(SECRET, safe=""),                                   # spaces as "+"
    quote(SECRET, safe=""),                                        # spaces as "%20"
    re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(SECRET, safe="")),
    json.dumps(SECRET)[1:-1],                                      # JSON-escaped
], ids=["form", "percent", "percent-lower", "json"])
def test_an_echoed_secret_is_masked_in_each_encoding(form):
    auth = ClientSecretBasic("client", SECRET)   # holds the secret while it lives
    exc = OAuthError("invalid_client", "the AS received " + form + " (wrong)")
    assert form not in shown(exc)
    assert "[masked]" in exc.error_description
    assert auth.client_id == "client"


def test_the_longest_credential_is_masked_first():
    """Two held credentials, one a prefix of the other: masking the short one first
    would leave the rest of the long one readable."""
    short = BearerTokenProvider("correct-horse-battery")
    long_ = BearerTokenProvider("correct-horse-battery-staple-42")
    exc = OAuthError("invalid_grant", "saw correct-horse-battery-staple-42 here")
    assert "staple" not in shown(exc)
    assert short and long_


def test_a_credential_brought_together_by_a_mask_is_masked_too(caplog):
    """Masking one credential can join text into another one (which contains the mask
    text itself); further passes mask that as well."""
    first = BearerTokenProvider("password1")
    second = BearerTokenProvider("[masked]-and-the-rest")
    exc = OAuthError("invalid_grant", "echo: password1-and-the-rest")
    assert "and-the-rest" not in shown(exc)
    with caplog.at_level(logging.INFO, "mcpauth"):
        logging.getLogger("mcpauth").info("echo: %s", "password1-and-the-rest")
    assert "and-the-rest" not in caplog.text
    assert first and second


def test_every_mcpauth_log_record_is_masked(caplog):
    """Not only exceptions: any record of the mcpauth logger (a peer string logged as
    it is, say) has the held credentials masked."""
    auth = ClientSecretBasic("client", SECRET)
    caplog.set_level(logging.INFO, "mcpauth")
    logging.getLogger("mcpauth").info("peer said %s", SECRET)
    assert SECRET not in caplog.text and "[masked]" in caplog.text
    assert auth.client_id == "client"


def test_a_basic_only_secret_is_masked_raw():
    """A ClientSecretBasic alone (no client_secret_post twin) holds the bare secret, not
    only the id:secret pair."""
    auth = ClientSecretBasic("client", "s3cr3t-only-basic")
    exc = OAuthError("invalid_client", "secret s3cr3t-only-basic is wrong")
    assert "s3cr3t-only-basic" not in shown(exc)
    assert auth.client_id == "client"
