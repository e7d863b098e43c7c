"""What a cron job's logs and stderr show: log levels, one line per metadata fetch, the
warm-run DEBUG line, warnings that point at the caller, and the command's stderr.

A cron job mails whatever reaches stderr, and operators run with ``INFO`` logging: a
routine run must be silent at INFO, and only mcpauth's own warnings may reach stderr.
"""

import io
import logging
import re
import sys
import warnings

import pytest

from mcpauth import ClientCredentialsProvider, FileTokenCache, MCPAuthWarning, MCPClient, cli
from mcpauth.testing import LoopbackStack

e2e = pytest.mark.e2e


@pytest.fixture
def stack():
    with LoopbackStack() as running:
        yield running


def _ours(caplog, level=logging.DEBUG):
    return [r for r in caplog.records if r.name == "mcpauth" and r.levelno >= level]


def _provider(stack, cache=None):
    kwargs = {"cache": cache} if cache is not None else {}
    return ClientCredentialsProvider(stack.client_id, stack.client_secret, **kwargs)


def _job(stack, provider):
    with MCPClient(stack.mcp_url, auth=provider) as client:
        return client.call_tool("add", {"a": 2, "b": 3})["content"][0]["text"]


# ---------------------------------------------------------------- levels


@e2e
def test_the_first_401_without_a_token_is_debug_not_info(stack, caplog):
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    assert _job(stack, _provider(stack)) == "5"
    about_401 = [r for r in _ours(caplog) if "answered 401" in r.getMessage()]
    assert len(about_401) == 1
    assert about_401[0].levelno == logging.DEBUG
    assert "without a token" in about_401[0].getMessage()
    # A cold run says at INFO only that it got a token.
    info = [r.getMessage() for r in _ours(caplog, logging.INFO)]
    assert len(info) == 1 and info[0].startswith("token issued by "), info


@e2e
def test_a_refused_token_is_info(stack, caplog, new_session):
    session = new_session()
    session.auth = _provider(stack)
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}
    session.post(stack.mcp_url, json=body)  # a token
    stack.as_.revoke()
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    session.post(stack.mcp_url, json=body)  # refused, renewed, replayed
    about_401 = [r for r in _ours(caplog) if "answered 401" in r.getMessage()]
    assert [r.levelno for r in about_401] == [logging.INFO]
    assert "without a token" not in about_401[0].getMessage()
    assert len(stack.as_.token_requests()) == 2


@e2e
def test_each_metadata_fetch_is_logged_once(stack, caplog):
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    _job(stack, _provider(stack))
    text = [r.getMessage() for r in _ours(caplog)]
    for path in ("/.well-known/oauth-protected-resource/mcp",
                 "/.well-known/oauth-authorization-server"):
        fetches = [m for m in text if path in m and re.search(r"-> (HTTP )?\d{3}\b", m)]
        assert len(fetches) == 1, fetches
        assert fetches[0].startswith("GET ")
        assert len([m for m in text if path in m]) <= 2, text  # the fetch, what it says


@e2e
def test_a_warm_run_is_silent_at_info_and_says_at_debug_which_token_it_uses(stack, caplog,
                                                                          tmp_path):
    path = str(tmp_path / "tokens.json")
    _job(stack, _provider(stack, FileTokenCache(path)))
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    provider = _provider(stack, FileTokenCache(path))  # the next cron run
    assert _job(stack, provider) == "5"
    provider.token()  # another use of the same token: not announced again
    assert _ours(caplog, logging.INFO) == []
    cached = [r.getMessage() for r in _ours(caplog) if "cached token" in r.getMessage()]
    assert len(cached) == 1, cached
    match = re.match(r"using the cached token for (\S+) \(expires in (\d+) s\)$", cached[0])
    assert match and match.group(1) == stack.mcp_url
    assert 3500 < int(match.group(2)) <= 3600
    assert len(stack.as_.token_requests()) == 1
    assert all(provider.token() not in r.getMessage() for r in caplog.records)


@e2e
def test_a_freshly_fetched_token_is_not_announced_as_cached(stack, caplog):
    caplog.set_level(logging.DEBUG, logger="mcpauth")
    provider = _provider(stack)
    _job(stack, provider)
    _job(stack, provider)
    assert not [r for r in _ours(caplog) if "cached token" in r.getMessage()]


# ---------------------------------------------------------------- warnings


@e2e
def test_a_warning_points_at_the_callers_line(stack, tmp_path, new_session):
    path = tmp_path / "tokens.json"
    path.write_bytes(b"{not json")
    session = new_session()
    session.auth = _provider(stack, FileTokenCache(str(path)))
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        session.post(stack.mcp_url, json=body)
    ours = [w for w in caught if issubclass(w.category, MCPAuthWarning)]
    assert ours, [str(w.message) for w in caught]
    for w in ours:
        assert (w.filename, w.lineno) == (__file__, line), (w.filename, w.lineno)


# ---------------------------------------------------------------- the command's stderr


class _LibraryDeprecationWarning(UserWarning):
    """Stands for cryptography's CryptographyDeprecationWarning (a UserWarning)."""


def _warning_command(args, out):
    # The flag in the text keeps the two runs' warnings apart in the warnings registry.
    warnings.warn("Python 3.7 is no longer supported by the Python core team ({}).".format(
        getattr(args, "verbose", False)), _LibraryDeprecationWarning, stacklevel=1)
    warnings.warn("the token cache is odd", MCPAuthWarning, stacklevel=1)
    out.write("ran\n")
    return 0


@pytest.mark.parametrize("verbose", [False, True])
def test_the_command_writes_only_its_own_warnings_to_stderr(monkeypatch, verbose):
    # cron mails any stderr: another library's warning (cryptography's deprecation of
    # Python 3.6 on every run) must not appear there as if mcpauth had said it.
    monkeypatch.setitem(cli._COMMANDS, "discover", _warning_command)
    out, err = io.StringIO(), io.StringIO()
    argv = (["--verbose"] if verbose else []) + ["discover", "https://mcp.example.com/mcp"]
    with warnings.catch_warnings():
        warnings.resetwarnings()  # Python's defaults, not this suite's "error"
        assert cli.main(argv, stdout=out, stderr=err) == 0
    assert out.getvalue() == "ran\n"
    lines = err.getvalue().splitlines()
    assert "mcpauth: warning: the token cache is odd" in lines
    warned = [line for line in lines if "no longer supported" in line]
    if verbose:
        assert len(warned) == 1 and warned[0].startswith("mcpauth: DEBUG: "), lines
        assert "_LibraryDeprecationWarning" in warned[0]
    else:
        assert warned == [] and lines == ["mcpauth: warning: the token cache is odd"]
