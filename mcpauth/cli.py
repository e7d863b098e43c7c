"""The ``mcpauth`` command: tokens, tool calls and discovery from a shell or a cron job.

Subcommands::

    mcpauth token URL                       print an access token for the MCP server
    mcpauth tools URL                       list the server's tools (JSON)
    mcpauth call URL TOOL [--arg k=v ...]   call a tool (JSON result)
    mcpauth discover URL                    show what discovery finds (no credentials)
    mcpauth key generate FILE               make a key pair; print the public JWK and kid
    mcpauth key inspect FILE                print an existing key's public JWK and kid
    mcpauth demo                            run every flow against loopback servers

Credentials come from files named by flags or from environment variables, never from
an argument value (argument values show in ``ps`` and in shell history). Discovery
follows RFC 9728 (protected resource metadata, including the §5.1 ``resource_metadata``
of a 401 challenge) and RFC 8414 (authorization server metadata); tokens come from the
providers (RFC 6749 §4.4 client credentials with a secret or an RFC 7523 §2.2 key, or
an assertion printed by an executable that reaches a key in an HSM or a KMS; RFC 7523
§2.1 workload assertions; cross-app access, RFC 8693 then RFC 7523 §2.1; or a token of
your own).

Exit statuses (also in ``mcpauth --help``)::

    0   success
    1   the tool ran and reported an error (``isError``; ``call`` only)
    2   usage or configuration error (bad flags, missing or unreadable credentials)
    3   authorization refused (RFC 6749 §5.2 error; HTTP 401 or 403 from the MCP server,
        with or without a Bearer challenge or a JSON-RPC body, or from a token
        endpoint without an error body; an authorization server other than
        --expected-issuer)
    4   network or transient failure (connection, timeout; HTTP 408, 429 or 5xx from
        any server, or a JSON-RPC error carried by one): retry later
    5   protocol error (a server broke RFC 9728/8414/6749 or answered a JSON-RPC error)
    70  internal error (a bug in mcpauth; --verbose shows the traceback)

Errors are one line on stderr, ``mcpauth: error: <message>``; ``--verbose`` adds the
mcpauth log (DEBUG) on stderr, which never contains secrets, tokens or URL queries,
and, for an internal error (70) only, the traceback. Every credential the command holds
or obtained is masked (``[masked]``) in all of that, and in the JSON that ``tools``,
``call`` and ``discover`` print, even when a server echoes it back (``token`` prints the
token: that is its job). No argument value is echoed in an
error: a misplaced secret must not land in a terminal or a cron mail, so argparse's
messages are cut down to the option name, and a URL argument that is not an http(s)
URL is reported without its text. The module uses only relative imports, so
``python -m yourpkg._vendor.mcpauth`` works when vendored.
"""

import argparse
import hashlib
import json
import logging
import os
import re
import stat
import sys
import warnings
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, TextIO, Tuple
from urllib.parse import urlsplit

from . import __version__
from .errors import (
    AuthorizationServerMismatchError,
    ConfigurationError,
    DiscoveryError,
    InsecureEndpointError,
    InsufficientScopeError,
    MCPAuthError,
    MCPAuthWarning,
    MCPError,
    OAuthError,
    ProtocolError,
    TransportError,
    UnauthorizedError,
)
from . import _mask
from .transport import DEFAULT_TIMEOUT, redact_url

__all__ = [
    "main",
    "build_parser",
    "exit_code_for",
    "EXIT_OK",
    "EXIT_TOOL_ERROR",
    "EXIT_USAGE",
    "EXIT_AUTH",
    "EXIT_NETWORK",
    "EXIT_PROTOCOL",
    "EXIT_INTERNAL",
]

logger = logging.getLogger("mcpauth")

EXIT_OK = 0
EXIT_TOOL_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NETWORK = 4
EXIT_PROTOCOL = 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

_ENV_PREFIX = "MCPAUTH_"

_CREDENTIALS_HELP = """\
credentials (a flag wins over the environment; never pass a secret as a value):
  client secret     --client-id ID --client-secret-file FILE
                    or MCPAUTH_CLIENT_ID + MCPAUTH_CLIENT_SECRET (or _FILE)
  private key JWT   --client-id ID --private-key-file PEM_OR_JWK [--algorithm ALG]
                    [--key-id KID], or MCPAUTH_PRIVATE_KEY_FILE / MCPAUTH_PRIVATE_KEY;
                    an encrypted key: --private-key-password-file FILE, or
                    MCPAUTH_PRIVATE_KEY_PASSWORD (or _FILE)
  key in HSM / KMS  --client-id ID --assertion-command EXECUTABLE, or
                    MCPAUTH_ASSERTION_COMMAND: run with the audience as its last
                    argument, it prints a client assertion (RFC 7523 §3) on stdout;
                    exit status 75 means try again later
  cross-app access  --id-token-file FILE --idp-url URL --idp-client-id ID
                    --idp-client-secret-file FILE, plus the client secret or key
                    above for the MCP server's authorization server (MCPAUTH_ID_TOKEN
                    or _FILE, MCPAUTH_IDP_URL, MCPAUTH_IDP_CLIENT_ID,
                    MCPAUTH_IDP_CLIENT_SECRET or _FILE)
  your own token    --token-file FILE, or MCPAUTH_TOKEN / MCPAUTH_TOKEN_FILE
  workload identity --workload-token-file FILE (re-read for each token request),
                    or MCPAUTH_WORKLOAD_TOKEN_FILE
  DPoP key          --dpop-key-file FILE, or MCPAUTH_DPOP_KEY_FILE; an encrypted
                    key: --dpop-key-password-file FILE, or MCPAUTH_DPOP_KEY_PASSWORD
                    (or _FILE)
  Every other option can also be set as MCPAUTH_<OPTION>, e.g. MCPAUTH_SCOPE,
  MCPAUTH_EXPECTED_ISSUER, MCPAUTH_CACHE, MCPAUTH_TIMEOUT, MCPAUTH_CALL_TIMEOUT. A
  Redis URL with a password belongs in MCPAUTH_CACHE, not on the command line.
"""

_EPILOG = _CREDENTIALS_HELP + """
exit status:
  0 success
  1 the tool reported an error (call)
  2 usage or configuration error
  3 authorization refused (OAuth error; HTTP 401 or 403 from the MCP server or a
    token endpoint; an authorization server other than --expected-issuer)
  4 network or transient failure: connection, timeout, HTTP 408, 429 or 5xx (retry
    later)
  5 protocol error (a server broke the specifications, or a JSON-RPC error)
  70 internal error (--verbose shows the traceback)

examples:
  curl -H "Authorization: Bearer $(mcpauth token https://mcp.example.com/mcp)" ...
  mcpauth call https://mcp.example.com/mcp add --arg a=2 --arg b=3 --cache ~/.cache/mcpauth.json
"""

# What a subcommand's --help ends with: the full story is in mcpauth --help only.
_SUB_EPILOG = """\
Every option can also be set as MCPAUTH_<OPTION> (MCPAUTH_SCOPE, MCPAUTH_CACHE, ...).
Credentials, their environment variables and the exit statuses: mcpauth --help
"""

_KEY_EPILOG = """\
examples:
  mcpauth key generate ~/.config/mcpauth/client.pem
      writes the private key (PEM, PKCS#8, mode 0600) and client.pem.pub.jwk (the
      public JWK to register, with its RFC 7638 thumbprint as kid), and prints both;
      then pass --key-id=KID (with "=": a kid may begin with "-")
  mcpauth key inspect ~/.config/mcpauth/client.pem
      prints the public JWK and kid of an existing key (PEM, DER or JWK)
A password (--password-file FILE, or MCPAUTH_PRIVATE_KEY_PASSWORD or _FILE) encrypts
the generated key, or decrypts the inspected one. Exit statuses: mcpauth --help
"""

# (option name, value forms in the environment) per credential kind.
_KIND_FLAGS = (
    ("client secret", "client_secret_file"),
    ("private key", "private_key_file"),
    ("assertion command", "assertion_command"),
    ("cross-app", "id_token_file"),
    ("token", "token_file"),
    ("workload token", "workload_token_file"),
)
_KIND_ENV = (
    ("client secret", ("MCPAUTH_CLIENT_SECRET", "MCPAUTH_CLIENT_SECRET_FILE")),
    ("private key", ("MCPAUTH_PRIVATE_KEY", "MCPAUTH_PRIVATE_KEY_FILE")),
    ("assertion command", ("MCPAUTH_ASSERTION_COMMAND",)),
    ("cross-app", ("MCPAUTH_ID_TOKEN", "MCPAUTH_ID_TOKEN_FILE")),
    ("token", ("MCPAUTH_TOKEN", "MCPAUTH_TOKEN_FILE")),
    ("workload token", ("MCPAUTH_WORKLOAD_TOKEN_FILE",)),
)
# Options that are never read from the environment.
_NOT_FROM_ENV = frozenset(["help", "version", "arg", "json_args", "password_file",
                           "key_type", "public_file"])
# Variables read directly (not as MCPAUTH_<OPTION>); the parser's options add the rest.
_OTHER_ENV = ("MCPAUTH_CLIENT_ID", "MCPAUTH_PRIVATE_KEY_PASSWORD",
              "MCPAUTH_PRIVATE_KEY_PASSWORD_FILE", "MCPAUTH_DPOP_KEY_PASSWORD",
              "MCPAUTH_DPOP_KEY_PASSWORD_FILE", "MCPAUTH_IDP_CLIENT_SECRET",
              "MCPAUTH_IDP_CLIENT_SECRET_FILE", "MCPAUTH_CACHE_KEY")
# A bare file name shown in messages: a name, a dot and a short extension.
_BARE_FILE_NAME = re.compile(r"[\w-][\w.-]*\.[A-Za-z0-9]{1,8}\Z")
# The helper of --assertion-command exits with this (EX_TEMPFAIL) to mean "retry later".
_EX_TEMPFAIL = 75
# Variables whose value is a credential (or may hold one: a Redis URL's password). The
# assertion command signs with its own key and never inherits them.
_CREDENTIAL_ENV = frozenset(["MCPAUTH_CLIENT_SECRET", "MCPAUTH_PRIVATE_KEY",
                             "MCPAUTH_PRIVATE_KEY_PASSWORD", "MCPAUTH_ID_TOKEN",
                             "MCPAUTH_IDP_CLIENT_SECRET", "MCPAUTH_TOKEN",
                             "MCPAUTH_CACHE_KEY", "MCPAUTH_CACHE"])
# Flags that would put a secret on the command line: accepted by the parser only to be
# refused with a pointer to the safe alternative (and never echoed).
_REFUSED_FLAGS = (
    ("--client-secret", "--client-secret-file FILE or MCPAUTH_CLIENT_SECRET"),
    ("--token", "--token-file FILE or MCPAUTH_TOKEN"),
    ("--private-key", "--private-key-file FILE or MCPAUTH_PRIVATE_KEY"),
    ("--password", "a file or an environment variable"),
)
# Option defaults (applied after parsing, so that options work before or after the
# subcommand and the environment fills in what the command line left out).
_DEFAULTS = {
    "timeout": DEFAULT_TIMEOUT,
    "verbose": False,
}


class UsageError(Exception):
    """A command-line or configuration problem found by the command itself (exit 2)."""


# argparse's "argument NAME: DETAIL" (NAME as _get_action_name gives it).
_ARGUMENT_ERROR = re.compile(r"argument ([A-Za-z0-9_/-]+): (.*)\Z", re.S)
# An unknown long option whose name may be shown: real option names are lowercase
# words joined with hyphens; anything else (digits, capitals) may be a pasted secret.
_SHOWN_OPTION = re.compile(r"--[a-z]+(-[a-z]+)*\Z")


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and never echo an argument value.

    argparse quotes the value it refused (``invalid float value: 's3cr3t'``,
    ``invalid choice: ...``, ``ignored explicit argument ...``); any argument may be a
    misplaced secret, so only the option name and the kind of error are kept.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(self._scrub(message))

    def _scrub(self, message: str) -> str:
        match = _ARGUMENT_ERROR.match(message)
        if match is None:
            if message.startswith("the following arguments are required:"):
                return message  # metavars only (URL, TOOL)
            # "ambiguous option: --x=VALUE could match ...", and whatever else a
            # Python version says: keep the words before the first quote or colon.
            head = re.split(r"[:'\"]", message, maxsplit=1)[0].strip()
            return "{}; see mcpauth --help".format(head or "invalid arguments")
        name, detail = match.groups()
        if name == "COMMAND":
            # The word argparse did not know may be a misplaced secret.
            return ("unknown command; the commands are token, tools, call, discover, "
                    "key and demo, and options go after the command")
        # "invalid float value: 'x'" -> "invalid float value"; "ignored explicit
        # argument 'x'" -> "ignored explicit argument"; "expected one argument" stays.
        detail = re.split(r"[:'\"]", detail, maxsplit=1)[0].strip() or "invalid value"
        for action in self._actions:
            if name in ("/".join(action.option_strings), action.metavar, action.dest):
                if action.choices and detail.startswith("invalid choice"):
                    detail += " (choose from {})".format(", ".join(
                        str(c) for c in action.choices))
                break
        return "argument {}: {}".format(name, detail)


# --------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------

# (flag, metavar, help) of the credential options.
_CREDENTIAL_OPTIONS = (
    ("--client-id", "ID", "the client registered at the authorization server"),
    ("--client-secret-file", "FILE", "file holding the client secret"),
    ("--private-key-file", "FILE", "PEM, DER or JWK private key for private_key_jwt"),
    ("--private-key-password-file", "FILE",
     "file holding the password of an encrypted private key"),
    ("--algorithm", "ALG", "JWS algorithm for the key (default: the key's)"),
    ("--key-id", "KID", "kid header"),
    ("--assertion-command", "EXECUTABLE", "run EXECUTABLE AUDIENCE for each client "
     "assertion (private_key_jwt with a key in an HSM or a KMS)"),
    ("--id-token-file", "FILE", "cross-app access: file holding the user's ID token"),
    ("--idp-url", "URL", "cross-app access: the IdP's issuer URL"),
    ("--idp-client-id", "ID", "cross-app access: the client registered at the IdP"),
    ("--idp-client-secret-file", "FILE", "cross-app access: file holding its secret"),
    ("--token-file", "FILE", "file holding a token of your own (no OAuth)"),
    ("--workload-token-file", "FILE", "file holding the platform's workload identity JWT"),
    ("--dpop-key-file", "FILE", "DPoP (RFC 9449): bind tokens to this private key (PEM, "
     "DER or JWK; not the client key)"),
    ("--dpop-key-password-file", "FILE",
     "file holding the password of an encrypted DPoP key"),
)

def _add_common(parser: argparse.ArgumentParser, credentials: bool = True) -> None:
    """The options of the URL commands; ``credentials=False`` accepts the credential
    options (a script may pass the same flags to every command) but leaves them out of
    the help, for a command that reads none."""
    S = argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="store_true", default=S,
                        help="log what mcpauth does (DEBUG) on stderr; never secrets")
    parser.add_argument("--timeout", type=float, default=S, metavar="SECONDS",
                        help="seconds for each HTTP request (default %g)" % DEFAULT_TIMEOUT)
    parser.add_argument("--expected-issuer", default=S, metavar="URL",
                        help="refuse any authorization server but this issuer")
    parser.add_argument("--issuer", default=S, metavar="URL",
                        help="use this authorization server instead of choosing one from "
                             "the MCP server's metadata")
    parser.add_argument("--scope", default=S, help="space-separated scopes to request")

    def shown(text: str) -> str:
        return text if credentials else S

    parser.add_argument("--token-endpoint", default=S, metavar="URL",
                        help=shown("skip discovery and request tokens here"))
    parser.add_argument("--cache", default=S, metavar="FILE",
                        help=shown("keep tokens and discovery results in FILE (mode 0600) "
                                   "across runs, or share them through Redis: redis://, "
                                   "rediss:// or unix:// URL (needs redis-py and a cache "
                                   "key)"))
    parser.add_argument("--cache-key-file", default=S, metavar="FILE",
                        help=shown("the AES-256 key(s) sealing a Redis cache, newest first "
                                   "(or MCPAUTH_CACHE_KEY / MCPAUTH_CACHE_KEY_FILE)"))
    group = parser.add_argument_group("credentials") if credentials else parser
    for flag, metavar, text in _CREDENTIAL_OPTIONS:
        group.add_argument(flag, default=S, metavar=metavar, help=shown(text))
    group.add_argument("--auth-method", default=S,
                       choices=("client_secret_basic", "client_secret_post"),
                       help=shown("how to send the secret (default: from the server's "
                                  "metadata)"))
    for flag, _ in _REFUSED_FLAGS:
        group.add_argument(flag, dest="refused_" + flag[2:].replace("-", "_"),
                           nargs="?", const="", default=S, help=S)


class _Unbuilt(object):
    """Stands in for a subcommand's parser that this run will not use (its options are
    not built: argparse's add_argument is most of a warm run's own time)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser of the ``mcpauth`` command (with ``only``: of that command's
    options only; every command is still listed)."""
    parser = _Parser(
        prog="mcpauth", allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Machine-to-machine OAuth for MCP servers: get tokens, list and call "
                    "tools, inspect discovery.",
        epilog=_EPILOG)
    parser.add_argument("--version", action="version", version="mcpauth " + __version__)
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what mcpauth does (DEBUG) on stderr; never secrets")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, epilog: str = _SUB_EPILOG) -> Any:
        if only is not None and only != name:
            return _Unbuilt()  # the run is that other command: its parser is never shown
        return sub.add_parser(name, help=help_text, description=help_text,
                              allow_abbrev=False, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("token", "print an access token for the MCP server at URL (and nothing else)")
    p.add_argument("url", metavar="URL", help="the MCP server URL")
    _add_common(p)

    p = command("tools", "list the tools of the MCP server at URL, as JSON")
    p.add_argument("url", metavar="URL", help="the MCP server URL")
    _add_common(p)
    _add_client_options(p)

    p = command("call", "call TOOL on the MCP server at URL and print the result as JSON")
    p.add_argument("url", metavar="URL", help="the MCP server URL")
    p.add_argument("tool", metavar="TOOL", help="the tool name")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an argument; VALUE is read as JSON when it parses (2, true, "
                        "[1]) and as a string otherwise; KEY:=JSON requires JSON")
    p.add_argument("--json", dest="json_args", metavar="OBJECT", default=None,
                   help="all arguments as one JSON object (--arg values override)")
    _add_common(p)
    _add_client_options(p)

    p = command("discover", "show what discovery finds for the MCP server at URL "
                            "(needs no credentials)",
                "Every option can also be set as MCPAUTH_<OPTION>. Exit statuses: "
                "mcpauth --help\n")
    p.add_argument("url", metavar="URL", help="the MCP server URL")
    _add_common(p, credentials=False)

    p = command("key", "make or inspect the key pair of a private_key_jwt client",
                _KEY_EPILOG)
    actions = p.add_subparsers(dest="key_action", metavar="ACTION")
    for action, text in (("generate", "generate a key pair into FILE (private) and "
                                      "FILE.pub.jwk (public JWK); print the public JWK"),
                         ("inspect", "print the public JWK and RFC 7638 thumbprint of the "
                                     "key in FILE")):
        a = actions.add_parser(action, help=text, description=text, epilog=_KEY_EPILOG,
                               allow_abbrev=False,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        a.add_argument("file", metavar="FILE", help="the private key file (PEM, DER or JWK)")
        a.add_argument("--password-file", default=argparse.SUPPRESS, metavar="FILE",
                       help="file holding the key's password")
        if action == "generate":
            a.add_argument("--type", dest="key_type", default="P-256",
                           choices=("P-256", "P-384", "P-521", "RSA", "Ed25519"),
                           help="the key type (default P-256, for ES256)")
            a.add_argument("--public-file", default=None, metavar="FILE",
                           help="where to write the public JWK (default FILE.pub.jwk)")

    p = command("demo", "run every flow against loopback test servers (no network needed)")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also show the mcpauth log")
    return parser


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol-version", default=argparse.SUPPRESS, metavar="VERSION",
                        help="pin the MCP protocol version (default: 2026-07-28 if the "
                             "server supports it, else the stateful lifecycle)")
    parser.add_argument("--call-timeout", type=float, default=argparse.SUPPRESS,
                        metavar="SECONDS",
                        help="seconds the whole MCP call may take, however slowly the "
                             "server replies (default 300)")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    args, extra = parser.parse_known_args(list(argv))
    if extra:
        # Show the unknown option names, but never a value (a bare word, "--x=VALUE",
        # "-Xvalue", or a "name" that does not look like one): it may be a secret.
        shown = []  # type: List[str]
        for arg in extra:
            name = arg.split("=", 1)[0]
            if _SHOWN_OPTION.match(name) and len(name) <= 40:
                shown.append(name)
            elif re.match(r"-[A-Za-z]", arg) and not arg.startswith("--"):
                shown.append(arg[:2])  # a short option, without what is stuck to it
        values = len(extra) - len(shown)
        text = ", ".join(shown)
        if values:
            text += (", and " if shown else "") + "{} unexpected value(s)".format(values)
        raise UsageError("unrecognized arguments: " + text)
    for flag, alternative in _REFUSED_FLAGS:
        if hasattr(args, "refused_" + flag[2:].replace("-", "_")):
            raise UsageError("{} is not accepted: a secret on the command line shows in ps "
                             "and shell history; use {}".format(flag, alternative))
    return args


def _option(args: argparse.Namespace, name: str, env: Optional[str] = None) -> Any:
    """An option's value: the command line, else MCPAUTH_<NAME>, else the default."""
    source = "--" + name.replace("_", "-")
    if hasattr(args, name):
        value = getattr(args, name)  # type: Any
    else:
        source = env or _ENV_PREFIX + name.upper()
        value = os.environ.get(source) or None
        if value is None:
            return _DEFAULTS.get(name)
        if name == "verbose":
            return value.lower() not in ("0", "false", "no")
    if name in _SECONDS:
        try:
            value = float(value)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise UsageError("{} must be a positive number of seconds ({})".format(
                source, _SECONDS[name]))
    return value


# Options that are a number of seconds, and what each bounds (for the error message).
_SECONDS = {"timeout": "the timeout of each HTTP request",
            "call_timeout": "the deadline of each MCP call"}


def _is_http_url(value: Any) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except (TypeError, ValueError, AttributeError):
        return False


def _check_url_arguments(args: argparse.Namespace) -> None:
    """Refuse a URL argument that is not an http(s) URL, without showing it.

    transport.check_url names the URL it refuses (redacted, which keeps a word that
    is no URL as it is); a secret given where a URL was expected must not be printed.
    """
    if not hasattr(args, "url"):
        return  # demo, key
    for name in _SECONDS:  # a bad MCPAUTH_TIMEOUT is refused even where unused
        _option(args, name)
    if not _is_http_url(args.url):
        raise UsageError("the URL argument is not an http(s) URL")
    for name in ("expected_issuer", "issuer", "token_endpoint", "idp_url"):
        value = _option(args, name)
        if value is not None and not _is_http_url(value):
            raise UsageError("--{} (or {}{}) is not an http(s) URL".format(
                name.replace("_", "-"), _ENV_PREFIX, name.upper()))


# --------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------

def _file_named(path: str, flag: str) -> str:
    """"the file PATH given by FLAG", or without PATH when it may be a misplaced secret.

    A path is shown when it looks like one: it has a ``/`` or a leading ``~`` and its
    first directory exists, or it is a short file name with an extension
    (``secret.txt``). A
    bare word, a JWT, or ``x/y`` under no real directory (a base64 secret has ``/`` too)
    is left out, since it may be a secret pasted where the file name belongs.
    """
    full = os.path.expanduser(path)
    if "/" in path or path.startswith("~"):
        # Its first directory exists (/etc of /etc/mcpauth/missing/secret), which a
        # base64 secret with a "/" in it practically never has.
        head = full.split(os.sep)[1 if full.startswith(os.sep) else 0]
        looks_like_path = bool(head) and os.path.isdir(
            os.sep + head if full.startswith(os.sep) else head)
    else:  # a bare file name: short, with an extension, and not a JWT
        looks_like_path = (len(path) <= 64 and _BARE_FILE_NAME.match(path) is not None
                           and path.count(".") < 2)
    if looks_like_path and len(path) <= 300 and path.isprintable():
        return "the file {} given by {}".format(path, flag)
    return ("the file given by {} (its name is not shown: it does not look like a path "
            "and could be a misplaced secret)".format(flag))


def _read_file(path: str, flag: str, binary: bool = False) -> Any:
    """Read a credential file; errors name the file and the flag or variable that gave
    it, never its content."""
    try:
        with open(os.path.expanduser(path), "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError("cannot read {} ({})".format(
            _file_named(path, flag), exc.strerror or type(exc).__name__)) from None
    if binary:
        if not data.strip():
            raise UsageError("{} is empty".format(_file_named(path, flag)))
        return data
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError("{} is not UTF-8 text".format(_file_named(path, flag))) from None
    if not text:
        raise UsageError("{} is empty".format(_file_named(path, flag)))
    if any(c in text for c in "\r\n\x00"):
        raise UsageError("{} holds more than one line".format(_file_named(path, flag)))
    return text


def _credential_kind(args: argparse.Namespace) -> Tuple[Optional[str], bool]:
    """(kind, from_flags): which credential the command line or environment names.

    Cross-app access also uses a client secret or key (for the MCP server's
    authorization server), so those go with it.
    """
    flagged = [kind for kind, name in _KIND_FLAGS if hasattr(args, name)]
    in_env = [kind for kind, names in _KIND_ENV if any(os.environ.get(n) for n in names)]
    if "cross-app" in flagged or (not flagged and "cross-app" in in_env):
        others = [kind for kind in (flagged if flagged else in_env)
                  if kind not in ("cross-app", "client secret", "private key")]
        if others:
            raise UsageError("cross-app access cannot be combined with a {}".format(
                " or ".join(others)))
        return "cross-app", bool(flagged)
    if len(flagged) > 1:
        raise UsageError("choose one kind of credential; got {}".format(" and ".join(flagged)))
    if flagged:
        return flagged[0], True
    if len(in_env) > 1:
        raise UsageError("the environment sets more than one kind of credential ({}); "
                         "unset one, or choose with a flag".format(" and ".join(in_env)))
    return (in_env[0] if in_env else None), False


def _secret_from(args: argparse.Namespace, from_flags: bool, flag_name: str, flag: str,
                 value_env: Optional[str], file_env: str, binary: bool = False) -> Any:
    if from_flags:
        return _read_file(getattr(args, flag_name), flag, binary)
    if value_env is not None and os.environ.get(value_env):
        value = os.environ[value_env]
        if binary:
            return value.encode("utf-8")
        value = value.strip()
        if not value or any(c in value for c in "\r\n\x00"):
            raise UsageError("{} must be one non-empty line".format(value_env))
        return value
    return _read_file(os.environ[file_env], file_env, binary)


def _optional_secret(args: argparse.Namespace, flag_name: str, flag: str, value_env: str,
                     binary: bool = False) -> Any:
    """As :func:`_secret_from` (--FLAG FILE, else ``value_env``, else ``value_env``_FILE),
    or None when none of the three is given."""
    from_flags = hasattr(args, flag_name)
    if from_flags or os.environ.get(value_env) or os.environ.get(value_env + "_FILE"):
        return _secret_from(args, from_flags, flag_name, flag, value_env, value_env + "_FILE",
                            binary)
    return None


def _cache(args: argparse.Namespace) -> Any:
    """The FileTokenCache or RedisTokenCache named by --cache / MCPAUTH_CACHE, or None."""
    path = _option(args, "cache")
    if not path:
        return None
    if path.startswith(("redis://", "rediss://", "unix://")):
        return _redis_cache(args, path)
    from .filecache import FileTokenCache

    return FileTokenCache(os.path.expanduser(path))


def _redis_cache(args: argparse.Namespace, url: str) -> Any:
    """A RedisTokenCache for ``url``, sealed with the keys from --cache-key-file,
    MCPAUTH_CACHE_KEY or MCPAUTH_CACHE_KEY_FILE (one key or more, the newest first)."""
    keys = _optional_secret(args, "cache_key_file", "--cache-key-file", "MCPAUTH_CACHE_KEY",
                            binary=True)
    if keys is None:
        raise UsageError("a Redis cache needs its key: --cache-key-file FILE, "
                         "MCPAUTH_CACHE_KEY or MCPAUTH_CACHE_KEY_FILE")
    from .rediscache import RedisTokenCache

    return RedisTokenCache.from_url(url, keys)


def _known_env(parser: argparse.ArgumentParser) -> List[str]:
    """Every MCPAUTH_ variable the command reads."""
    names = set(_OTHER_ENV)
    for _, group in _KIND_ENV:
        names.update(group)
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.option_strings and action.dest not in _NOT_FROM_ENV \
                    and not action.dest.startswith("refused_"):
                names.add(_ENV_PREFIX + action.dest.upper())
    return sorted(names)


def _unknown_env_hint() -> str:
    """"; MCPAUTH_X is not a variable mcpauth reads (did you mean ...?)", or ""."""
    known = _known_env(build_parser())
    unknown = sorted(n for n in os.environ if n.startswith(_ENV_PREFIX) and n not in known)
    if not unknown:
        return ""
    import difflib

    shown = []
    for name in unknown[:3]:
        close = difflib.get_close_matches(name, known, 1, 0.75)
        shown.append(name + (" (did you mean {}?)".format(close[0]) if close else ""))
    return "; {} {} not a variable mcpauth reads".format(
        ", ".join(shown), "is" if len(shown) == 1 else "are")


def _key_password(args: argparse.Namespace, flag_name: str, flag: str,
                  env: str = "MCPAUTH_PRIVATE_KEY_PASSWORD") -> Optional[str]:
    """The password of --FLAG FILE, else of ``env`` or ``env``_FILE, else None."""
    password = _optional_secret(args, flag_name, flag, env)
    return None if password is None else str(password)


def _load_key(data: bytes, password: Optional[str], where: str, password_flag: str,
              password_env: str = "MCPAUTH_PRIVATE_KEY_PASSWORD") -> Any:
    """The SigningKey in ``data``; errors say which key and how to give its password."""
    from . import jws
    from .errors import InvalidKeyError
    from .grants import _key_texts

    _mask.hold(None, password, *_key_texts(data))  # for the rest of the run
    try:
        return jws.load_private_key(data, password)
    except InvalidKeyError as exc:
        hint = ""
        if password is None and "encrypted" in str(exc):
            hint = "; give its password with {} FILE or {} (or _FILE)".format(
                password_flag, password_env)
        raise InvalidKeyError("the key given by {}: {}{}".format(where, exc, hint)) from None


def _private_key(args: argparse.Namespace, from_flags: bool) -> Any:
    """The private key of --private-key-file / MCPAUTH_PRIVATE_KEY(_FILE), decrypted."""
    data = _secret_from(args, from_flags, "private_key_file", "--private-key-file",
                        "MCPAUTH_PRIVATE_KEY", "MCPAUTH_PRIVATE_KEY_FILE", binary=True)
    where = "--private-key-file" if from_flags else (
        "MCPAUTH_PRIVATE_KEY" if os.environ.get("MCPAUTH_PRIVATE_KEY")
        else "MCPAUTH_PRIVATE_KEY_FILE")
    password = _key_password(args, "private_key_password_file", "--private-key-password-file")
    if password is None:
        from . import jws
        from .errors import InvalidKeyError

        try:
            if jws.key_algorithms(data) is not None:
                return data  # well-formed: loaded only if this run signs (not when cached)
        except InvalidKeyError:
            pass  # _load_key says which key
    return _load_key(data, password, where, "--private-key-password-file")


def _dpop_key(args: argparse.Namespace) -> Any:
    """The DPoP key of --dpop-key-file / MCPAUTH_DPOP_KEY_FILE, or None."""
    path = _option(args, "dpop_key_file")
    if not path:
        return None
    where = "--dpop-key-file" if hasattr(args, "dpop_key_file") else "MCPAUTH_DPOP_KEY_FILE"
    from .dpop import DPoPKey
    from .errors import InvalidKeyError

    data = _read_file(str(path), where, binary=True)
    password = _key_password(args, "dpop_key_password_file", "--dpop-key-password-file",
                             "MCPAUTH_DPOP_KEY_PASSWORD")
    key = _load_key(data, password, where, "--dpop-key-password-file",
                    "MCPAUTH_DPOP_KEY_PASSWORD")
    try:
        return DPoPKey(key)
    except InvalidKeyError as exc:
        raise InvalidKeyError("the key given by {}: {}".format(where, exc)) from None


def assertion_command(command: str, timeout: float, where: str) -> Callable[[str], str]:
    """A callable(audience) that runs ``command audience`` and returns what it prints.

    For a key that never leaves an HSM, a cloud KMS or a signing service: the executable
    (no shell; arguments split as a POSIX shell would) prints one client assertion
    (RFC 7523 §3) for the audience on stdout. Its stderr passes through. Exit status 75
    (EX_TEMPFAIL) means "try again later" (exit 4); any other failure is a
    configuration error (exit 2). The assertion then gets the same checks as one signed
    here (see PrivateKeyJwtProvider). The command inherits the environment without the
    variables that carry mcpauth's own credentials (secrets, tokens, key passwords, the
    Redis cache key and URL).
    """
    import shlex
    import shutil
    import subprocess

    from .errors import ConfigurationError, TransportError

    try:
        argv = shlex.split(command)
    except ValueError:
        argv = []
    if not argv:
        raise UsageError("{} is not a command (unbalanced quotes, or empty)".format(where))
    program = argv[0]
    if shutil.which(program) is None:
        raise UsageError("the assertion command {} (from {}) is not an executable file "
                         "found on PATH".format(program, where))

    def assertion(audience: str) -> str:
        try:
            env = dict((name, value) for name, value in os.environ.items()
                       if name not in _CREDENTIAL_ENV)
            proc = subprocess.run(argv + [audience], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise TransportError("the assertion command {} did not finish within {:g} "
                                 "seconds".format(program, timeout)) from None
        except OSError as exc:
            raise ConfigurationError("cannot run the assertion command {} ({})".format(
                program, exc.strerror or type(exc).__name__)) from None
        if proc.returncode == _EX_TEMPFAIL:
            raise TransportError("the assertion command {} exited with status 75 (try "
                                 "again later)".format(program))
        if proc.returncode != 0:
            raise ConfigurationError("the assertion command {} exited with status "
                                     "{}".format(program, proc.returncode))
        return proc.stdout.decode("ascii", "replace").strip()

    return assertion


def _cross_app_provider(args: argparse.Namespace, from_flags: bool, client_id: str,
                        options: Dict[str, Any]) -> Any:
    """CrossAppAccessProvider: the user's ID token -> ID-JAG at the IdP (RFC 8693) ->
    access token at the MCP server's authorization server (RFC 7523 §2.1)."""
    from .crossapp import CrossAppAccessProvider, discover_and_request_jwt_auth_grant

    id_token = _secret_from(args, from_flags, "id_token_file", "--id-token-file",
                            "MCPAUTH_ID_TOKEN", "MCPAUTH_ID_TOKEN_FILE")
    idp_url = _option(args, "idp_url")
    idp_client_id = _option(args, "idp_client_id")
    if not idp_url or not idp_client_id:
        raise UsageError("cross-app access needs the IdP: pass --idp-url and "
                         "--idp-client-id (or set MCPAUTH_IDP_URL and MCPAUTH_IDP_CLIENT_ID)")
    idp_secret = _optional_secret(args, "idp_client_secret_file", "--idp-client-secret-file",
                                  "MCPAUTH_IDP_CLIENT_SECRET")  # type: Optional[str]
    secret = key = None
    if hasattr(args, "private_key_file") or (
            not hasattr(args, "client_secret_file") and (
                os.environ.get("MCPAUTH_PRIVATE_KEY")
                or os.environ.get("MCPAUTH_PRIVATE_KEY_FILE"))):
        key = _private_key(args, hasattr(args, "private_key_file"))
    else:
        secret = _optional_secret(args, "client_secret_file", "--client-secret-file",
                                  "MCPAUTH_CLIENT_SECRET")
    if key is None and secret is None:
        raise UsageError("cross-app access also needs the client's credentials at the MCP "
                         "server's authorization server: --client-secret-file or "
                         "--private-key-file (or MCPAUTH_CLIENT_SECRET / "
                         "MCPAUTH_PRIVATE_KEY_FILE)")
    timeout = options["timeout"]

    def assertion(ctx: Any) -> Any:
        return discover_and_request_jwt_auth_grant(
            idp_url, id_token, ctx.authorization_server_url, ctx.resource_url,
            idp_client_id, idp_secret, scope=ctx.scope, session=ctx.session,
            timeout=timeout)

    # Tokens are the user's: label them by the ID token itself, so a --cache file serves
    # the next run with the same ID token and never another. Not by its iss and sub: they
    # are not verified here (the IdP verifies), and anyone can write an unsigned token
    # that claims another user's iss and sub.
    options["cache_key"] = "id-token:" + hashlib.sha256(
        id_token.encode("utf-8")).hexdigest()[:32]
    return CrossAppAccessProvider(assertion, client_id, secret, private_key=key,
                                  algorithm=_option(args, "algorithm"), **options)


def build_provider(args: argparse.Namespace, url: str, cache: Any = None) -> Any:
    """The provider the command line and environment describe.

    Args:
        args: the parsed command line.
        url: the MCP server URL.
        cache: a token cache for OAuth providers (None: in memory).

    Raises:
        UsageError: no credentials, several kinds, a missing client id, unreadable files.
        ConfigurationError: a provider refused the configuration.
    """
    from .providers import BearerTokenProvider, ClientCredentialsProvider, PrivateKeyJwtProvider

    kind, from_flags = _credential_kind(args)
    if kind is None:
        raise UsageError(
            "no credentials: set MCPAUTH_CLIENT_ID and MCPAUTH_CLIENT_SECRET (or pass "
            "--client-id and --client-secret-file, --private-key-file, --token-file or "
            "--workload-token-file){}".format(_unknown_env_hint()))
    dpop_key = _dpop_key(args)
    if kind == "token":
        if dpop_key is not None:
            raise UsageError("--dpop-key-file (MCPAUTH_DPOP_KEY_FILE) binds tokens mcpauth "
                             "requests; it cannot bind a token of your own (--token-file)")
        token = _secret_from(args, from_flags, "token_file", "--token-file",
                             "MCPAUTH_TOKEN", "MCPAUTH_TOKEN_FILE")
        return BearerTokenProvider(token)

    options = {"server_url": url, "timeout": _option(args, "timeout")}  # type: Dict[str, Any]
    if dpop_key is not None:
        options["dpop_key"] = dpop_key
    for name in ("scope", "expected_issuer", "issuer", "token_endpoint"):
        value = _option(args, name)
        if value is not None:
            options[name] = value
    if cache is not None:
        options["cache"] = cache
    client_id = _option(args, "client_id")

    if kind == "workload token":
        from .workload import WorkloadIdentityProvider
        path = str(args.workload_token_file) if from_flags \
            else os.environ["MCPAUTH_WORKLOAD_TOKEN_FILE"]
        if not os.path.isfile(os.path.expanduser(path)):
            raise UsageError("{} does not exist or is not a file".format(_file_named(
                path, "--workload-token-file" if from_flags
                else "MCPAUTH_WORKLOAD_TOKEN_FILE")))
        return WorkloadIdentityProvider(os.path.expanduser(path), client_id=client_id,
                                        **options)

    if not client_id:
        what = {"cross-app": "cross-app access",
                "assertion command": "an assertion command"}.get(kind, "a " + kind)
        raise UsageError("{} needs a client id: pass --client-id or set "
                         "MCPAUTH_CLIENT_ID{}".format(what, _unknown_env_hint()))
    if kind == "cross-app":
        return _cross_app_provider(args, from_flags, client_id, options)
    if kind == "assertion command":
        where = "--assertion-command" if from_flags else "MCPAUTH_ASSERTION_COMMAND"
        command = args.assertion_command if from_flags \
            else os.environ["MCPAUTH_ASSERTION_COMMAND"]
        return PrivateKeyJwtProvider(
            client_id, assertion=assertion_command(command, options["timeout"], where),
            algorithm=_option(args, "algorithm"), **options)
    if kind == "private key":
        return PrivateKeyJwtProvider(client_id, _private_key(args, from_flags),
                                     _option(args, "algorithm"),
                                     key_id=_option(args, "key_id"), **options)
    secret = _secret_from(args, from_flags, "client_secret_file", "--client-secret-file",
                          "MCPAUTH_CLIENT_SECRET", "MCPAUTH_CLIENT_SECRET_FILE")
    return ClientCredentialsProvider(
        client_id, secret, token_endpoint_auth_method=_option(args, "auth_method"),
        **options)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------

def _print_json(value: Any, out: TextIO) -> None:
    # What the MCP server answered: masked, in case it echoes the token it was sent.
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    out.write(_mask.mask(text) + "\n")


def _cmd_token(args: argparse.Namespace, out: TextIO) -> int:
    from .providers import OAuthProvider

    provider = build_provider(args, args.url, _cache(args))
    if isinstance(provider, OAuthProvider):
        token = provider.token(args.url)
    else:
        token = provider.token()
    if not token:
        raise UsageError("no token is available")
    out.write(token + "\n")
    return EXIT_OK


def _with_client(args: argparse.Namespace, use: Callable[[Any], Any]) -> Any:
    """Run ``use(client)`` with an MCPClient for args.url.

    Without ``--protocol-version`` the client detects the lifecycle from the answer to
    the call itself, so a warm run (cached token) sends one HTTP request.
    """
    from .client import MCPClient

    provider = build_provider(args, args.url, _cache(args))
    kwargs = {"timeout": _option(args, "timeout")}  # type: Dict[str, Any]
    call_timeout = _option(args, "call_timeout")
    if call_timeout is not None:
        kwargs["call_timeout"] = call_timeout
    pinned = _option(args, "protocol_version")
    if pinned:
        kwargs["protocol_version"] = pinned
    with MCPClient(args.url, auth=provider, **kwargs) as client:
        return use(client)


def _cmd_tools(args: argparse.Namespace, out: TextIO) -> int:
    tools = _with_client(args, lambda client: client.list_tools())
    _print_json(tools, out)
    return EXIT_OK


def parse_tool_arguments(pairs: Sequence[str], json_object: Optional[str]) -> Dict[str, Any]:
    """Tool arguments from ``--json OBJECT`` and ``--arg KEY=VALUE`` / ``KEY:=JSON``.

    ``KEY=VALUE`` reads VALUE as JSON when it parses (``2``, ``true``, ``[1, 2]``,
    ``"quoted"``) and as a plain string otherwise; ``KEY:=JSON`` requires JSON. The
    ``--arg`` values override members of ``--json``.

    Raises:
        UsageError: malformed pairs or JSON.
    """
    arguments = {}  # type: Dict[str, Any]
    if json_object is not None:
        try:
            parsed = json.loads(json_object)
        except ValueError:
            raise UsageError("--json is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise UsageError("--json must be a JSON object")
        arguments.update(parsed)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or key == ":":
            raise UsageError("--arg needs KEY=VALUE or KEY:=JSON")
        if key.endswith(":"):
            key = key[:-1]
            try:
                arguments[key] = json.loads(value)
            except ValueError:
                raise UsageError("--arg {}:= needs a JSON value".format(key)) from None
            continue
        try:
            arguments[key] = json.loads(value)
        except ValueError:
            arguments[key] = value
    return arguments


def _cmd_call(args: argparse.Namespace, out: TextIO) -> int:
    arguments = parse_tool_arguments(args.arg, args.json_args)
    result = _with_client(args, lambda client: client.call_tool(args.tool, arguments))
    _print_json(result, out)
    if isinstance(result, dict) and result.get("isError") is True:
        return EXIT_TOOL_ERROR
    return EXIT_OK


def _chosen_client_auth(args: argparse.Namespace, advertised: Optional[Sequence[str]]
                        ) -> Optional[str]:
    from .grants import select_auth_method

    kind, _ = _credential_kind(args)
    if kind == "token":
        return None  # a token of your own: no token request at all
    if kind == "private key":
        return select_auth_method(advertised, "private_key_jwt")
    if kind == "workload token":
        return "none"  # the workload assertion is the grant; no client authentication
    return select_auth_method(advertised, _option(args, "auth_method"))


def discover_server(args: argparse.Namespace, url: str) -> Dict[str, Any]:
    """What discovery finds for ``url`` (RFC 9728, RFC 8414), as a JSON-able dict.

    Well-known URLs first; when the server publishes its metadata only in the
    ``resource_metadata`` of a 401 challenge (RFC 9728 §5.1), an unauthenticated
    JSON-RPC ``ping`` is sent to get one. No credentials are read or sent.
    """
    from . import discovery
    from .grants import normalize_scope
    from .transport import RequestsTransport

    transport = RequestsTransport(timeout=_option(args, "timeout"))
    expected_issuer = _option(args, "expected_issuer")
    issuer = _option(args, "issuer")
    found_via = "well-known URL"
    challenge_scope = None
    try:
        result = discovery.discover(transport, url, expected_issuer=expected_issuer,
                                    issuer=issuer)
    except DiscoveryError as first:
        challenge = discovery.fetch_challenge(transport, url, first)
        metadata_url = challenge.params.get("resource_metadata") if challenge else None
        if metadata_url is None:
            raise first
        challenge_scope = challenge.params.get("scope") if challenge else None
        found_via = "401 challenge (WWW-Authenticate resource_metadata)"
        result = discovery.discover(transport, url, resource_metadata_url=metadata_url,
                                    expected_issuer=expected_issuer, issuer=issuer)
    prm = result.prm
    md = result.metadata

    def as_list(value: Optional[Sequence[str]]) -> Optional[List[str]]:
        return None if value is None else list(value)

    scopes_supported = prm.scopes_supported if prm is not None else None
    scope = _option(args, "scope") or challenge_scope or (
        normalize_scope(scopes_supported) if scopes_supported else None)
    return {
        "server_url": url,
        "found_via": found_via,
        "protected_resource_metadata_url": prm.url if prm is not None else None,
        "resource": result.resource,
        "authorization_servers": list(prm.authorization_servers) if prm else [],
        "issuer": result.issuer,
        "authorization_server_metadata_url": md.url,
        "token_endpoint": md.token_endpoint,
        "token_endpoint_auth_methods_supported": as_list(
            md.token_endpoint_auth_methods_supported),
        "token_endpoint_auth_signing_alg_values_supported": as_list(
            md.token_endpoint_auth_signing_alg_values_supported),
        "grant_types_supported": as_list(md.grant_types_supported),
        "client_authentication": _chosen_client_auth(
            args, md.token_endpoint_auth_methods_supported),
        "scopes_supported": as_list(scopes_supported),
        "scope": scope,
    }


def _cmd_discover(args: argparse.Namespace, out: TextIO) -> int:
    _print_json(discover_server(args, args.url), out)
    return EXIT_OK


def _key_summary(key: Any) -> Dict[str, Any]:
    """What to register for a key: its public JWK with ``kid`` = the RFC 7638 thumbprint."""
    jwk = key.public_jwk()
    kid = key.thumbprint()
    jwk.update({"kid": kid, "alg": key.default_algorithm, "use": "sig"})
    return {"kid": kid, "thumbprint": kid, "alg": key.default_algorithm,
            "algorithms": list(key.algorithms), "kty": key.kty, "crv": key.curve,
            "key_size": key.key_size, "public_jwk": jwk}


def _write_new_file(path: str, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; never replace an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError("{} exists; mcpauth key generate never overwrites a key".format(
            path)) from None
    except OSError as exc:
        raise UsageError("cannot create {} ({})".format(
            path, exc.strerror or type(exc).__name__)) from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, data)
    finally:
        os.close(fd)


def _cmd_key(args: argparse.Namespace, out: TextIO) -> int:
    """``mcpauth key generate FILE`` / ``mcpauth key inspect FILE``."""
    from . import jws
    from .errors import InvalidKeyError

    action = getattr(args, "key_action", None)
    if action is None:
        raise UsageError("mcpauth key needs an action: generate or inspect")
    path = os.path.expanduser(args.file)
    password = _key_password(args, "password_file", "--password-file")
    if action == "generate":
        public_path = os.path.expanduser(args.public_file or args.file + ".pub.jwk")
        kind = args.key_type
        key = (jws.generate_private_key("RSA", key_size=3072) if kind == "RSA"
               else jws.generate_private_key("OKP") if kind == "Ed25519"
               else jws.generate_private_key("EC", curve=kind))
        from cryptography.hazmat.primitives import serialization

        encryption = (serialization.BestAvailableEncryption(password.encode("utf-8"))
                      if password else serialization.NoEncryption())  # type: Any
        pem = key._key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8, encryption)
        summary = _key_summary(key)
        _write_new_file(path, pem)
        try:
            _write_new_file(public_path, (json.dumps(
                summary["public_jwk"], indent=2, sort_keys=True) + "\n").encode("utf-8"))
        except UsageError:
            os.unlink(path)
            raise
        summary.update({"private_key_file": path, "public_key_file": public_path,
                        "encrypted": bool(password)})
        _print_json(summary, out)
        return EXIT_OK
    data = _read_file(args.file, "the FILE argument", binary=True)
    try:
        key = _load_key(data, password, args.file, "--password-file")
    except InvalidKeyError as exc:
        if "public key" not in str(exc):
            raise
        raise UsageError("{} holds a public key; mcpauth key inspect reads the private "
                         "key (the thumbprint of a public JWK: mcpauth.jws.jwk_thumbprint)"
                         .format(args.file)) from None
    summary = _key_summary(key)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    summary.update({"private_key_file": path, "file_mode": "{:04o}".format(mode)})
    if mode & 0o077:
        warnings.warn("{} can be read by other users (mode {:04o}); chmod 600 it".format(
            path, mode), MCPAuthWarning, stacklevel=2)
    _print_json(summary, out)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from ._demo import run_demo

    return run_demo(out)


_COMMANDS = {
    "token": _cmd_token,
    "tools": _cmd_tools,
    "call": _cmd_call,
    "discover": _cmd_discover,
    "key": _cmd_key,
    "demo": _cmd_demo,
}  # type: Dict[str, Callable[[argparse.Namespace, TextIO], int]]


# --------------------------------------------------------------------------------------
# Errors, logging, warnings
# --------------------------------------------------------------------------------------

def exit_code_for(exc: BaseException) -> int:
    """The exit status for an exception (see the module docstring for the table)."""
    import requests

    if isinstance(exc, (UsageError, ConfigurationError, InsecureEndpointError)):
        return EXIT_USAGE
    if isinstance(exc, MCPAuthError):
        if exc.retryable or isinstance(exc, TransportError):
            return EXIT_NETWORK  # 408, 429, 5xx (ProtocolError and MCPError by status)
        if isinstance(exc, (OAuthError, UnauthorizedError, InsufficientScopeError,
                            AuthorizationServerMismatchError)):
            return EXIT_AUTH
        if (isinstance(exc, (ProtocolError, MCPError)) and not isinstance(exc, DiscoveryError)
                and getattr(exc, "status_code", None) in (401, 403)):
            # A 403 without insufficient_scope (or a 401 the provider never saw) from the
            # MCP server, or a token endpoint's 401/403 without an OAuth error body: the
            # request was refused, which is not a broken protocol. (A DiscoveryError
            # with 401/403 means the metadata is not published there: exit 5.)
            return EXIT_AUTH
        return EXIT_PROTOCOL
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.URLRequired)):
        return EXIT_USAGE
    if isinstance(exc, requests.exceptions.RequestException):
        return EXIT_NETWORK
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INTERNAL


def _error_message(exc: BaseException, url: Optional[str]) -> str:
    import requests

    if isinstance(exc, (UsageError, MCPAuthError)):
        return str(exc)
    where = " talking to " + redact_url(url) if url else ""
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out" + where
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "could not connect" + where
    if isinstance(exc, requests.exceptions.RequestException):
        return "HTTP request failed{} ({})".format(where, type(exc).__name__)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    # Anything else is a bug; its text could hold anything, so show only its type.
    return "internal error ({}); run with --verbose for the traceback".format(
        type(exc).__name__)


class _StderrWarnings(object):
    """Shows mcpauth's warnings as one ``mcpauth: warning:`` line (no source line, no path).

    Other libraries' warnings (cryptography's deprecation of an old Python on every run,
    say) are not ours to report and would make cron mail every run: they go to the
    ``mcpauth`` logger at DEBUG, which ``--verbose`` shows.
    """

    def __init__(self, err: TextIO) -> None:
        self.err = err

    def __call__(self, message: Any, category: Any, filename: str, lineno: int,
                 file: Any = None, line: Any = None) -> None:
        if isinstance(category, type) and issubclass(category, MCPAuthWarning):
            self.err.write("mcpauth: warning: {}\n".format(_mask.mask(str(message))))
        else:
            logger.debug("%s from %s: %s", getattr(category, "__name__", "warning"),
                         os.path.basename(filename), message)


def _setup_logging(verbose: bool, err: TextIO) -> Optional[logging.Handler]:
    if not verbose:
        return None
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("mcpauth: %(levelname)s: %(message)s"))
    log = logging.getLogger("mcpauth")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return handler


def main(argv: Optional[Sequence[str]] = None, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    """Run the ``mcpauth`` command and return its exit status.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        stdout, stderr: where to write (default the process's streams).

    Returns:
        The exit status (see the module docstring).
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    words = list(sys.argv[1:] if argv is None else argv)
    # The command is the first word unless options come first (then build them all).
    parser = build_parser(words[0] if words and words[0] in _COMMANDS else None)
    verbose = False
    url = None  # type: Optional[str]
    handler = None  # type: Optional[logging.Handler]
    saved_level = logging.getLogger("mcpauth").level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", MCPAuthWarning)
            warnings.showwarning = _StderrWarnings(err)
            try:
                args = _parse(parser, words)
            except SystemExit as exc:  # --help, --version
                return int(exc.code or 0)
            verbose = bool(_option(args, "verbose"))
            handler = _setup_logging(verbose, err)
            if not getattr(args, "command", None):
                raise UsageError("a command is required ({}); see mcpauth --help".format(
                    ", ".join(_COMMANDS)))
            _check_url_arguments(args)
            url = getattr(args, "url", None)
            return _COMMANDS[args.command](args, out)
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code_for(exc)
        if verbose and code == EXIT_INTERNAL:
            # Only for a bug. Other errors say all there is in their one line; their
            # chained causes (urllib3, requests) would print URLs with their queries.
            import traceback

            err.write(_mask.mask(traceback.format_exc()))
        message = _error_message(exc, url)
        if code == EXIT_PROTOCOL:
            from .providers import missing_path_hint

            hint = missing_path_hint(url)
            if hint and hint not in message:
                message += hint
        err.write("mcpauth: error: {}\n".format(_mask.mask(message)))
        return code
    finally:
        if handler is not None:
            logging.getLogger("mcpauth").removeHandler(handler)
            logging.getLogger("mcpauth").setLevel(saved_level)
        try:
            out.flush()
        except (OSError, ValueError):
            pass
