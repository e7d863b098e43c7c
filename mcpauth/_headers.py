"""SEP-2243 headers of the 2026-07-28 Streamable HTTP transport (pure functions).

* ``Mcp-Name`` mirrors ``params.name`` / ``params.uri``; ``Mcp-Param-{Name}`` mirrors
  each ``tools/call`` argument whose ``inputSchema`` property carries
  ``"x-mcp-header": "{Name}"``.
* Value encoding: a value of printable ASCII (0x20-0x7E) without leading or trailing
  whitespace goes as it is; anything else (non-ASCII, control characters, CR/LF, tab,
  leading or trailing space, or text that itself looks like the sentinel) goes as
  ``=?base64?{Base64 of the UTF-8 bytes}?=`` (standard alphabet). Integers are sent in
  decimal, booleans as ``true`` / ``false``; a null or omitted argument sends no header.
* A tool's ``x-mcp-header`` declarations are valid only when each is a non-empty RFC 9110
  §5.1 token, unique case-insensitively in the schema, on a property of type
  ``string``, ``integer`` or ``boolean``, reachable from the schema root through
  ``properties`` alone. Clients MUST exclude a tool that breaks any of these.
"""

import base64
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = ["PARAM_HEADER_PREFIX", "encode_header_value", "header_bindings",
           "param_headers"]

PARAM_HEADER_PREFIX = "Mcp-Param-"
X_MCP_HEADER = "x-mcp-header"
_SENTINEL = "=?base64?"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_PRIMITIVE_TYPES = ("string", "integer", "boolean")
# JSON Schema 2020-12 keywords whose value is a subschema, a list of them, or a map of
# them (Core §10, Validation §3); a declaration under any of them is not reachable
# through "properties" alone. Other keywords hold data, never searched.
_SUBSCHEMA = ("items", "additionalItems", "contains", "additionalProperties",
              "unevaluatedProperties", "unevaluatedItems", "propertyNames", "not", "if",
              "then", "else")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SUBSCHEMA_MAPS = ("$defs", "definitions", "patternProperties", "dependentSchemas")

#: (argument path, header name) pairs of one tool.
Bindings = Tuple[Tuple[Tuple[str, ...], str], ...]


def encode_header_value(value: str) -> str:
    """A header value: as is when it is plain printable ASCII, else the SEP-2243
    ``=?base64?<UTF-8 bytes, base64>?=`` sentinel form."""
    plain = (all(" " <= ch <= "~" for ch in value) and value == value.strip()
             and not value.startswith(_SENTINEL))
    if plain and value:  # an empty value too: some intermediaries drop empty fields
        return value
    # surrogatepass: a lone surrogate (JSON's "\ud800" decodes to one) is no
    # UnicodeEncodeError; the server sees bytes that match no text and refuses the call.
    raw = value.encode("utf-8", "surrogatepass")
    return _SENTINEL + base64.b64encode(raw).decode("ascii") + "?="


def header_bindings(input_schema: Any) -> Tuple[Optional[Bindings], Optional[str]]:
    """Scan a tool's ``inputSchema`` for ``x-mcp-header`` declarations.

    Returns ``(bindings, None)`` for a valid schema (bindings may be empty) and
    ``(None, reason)`` for one a client must exclude.
    """
    found: List[Tuple[Tuple[str, ...], str]] = []
    problem = _scan(input_schema, (), True, found)
    if problem is not None:
        return None, problem
    seen = set()
    for _, name in found:
        if name.lower() in seen:
            return None, "x-mcp-header {} is declared twice".format(_shown(name))
        seen.add(name.lower())
    return tuple(found), None


def _scan(node: Any, path: Tuple[str, ...], reachable: bool,
          found: List[Tuple[Tuple[str, ...], str]]) -> Optional[str]:
    """Walk every subschema; a declaration counts only on a path of ``properties``."""
    if not isinstance(node, dict):
        return None
    if X_MCP_HEADER in node and path:
        name = node[X_MCP_HEADER]
        if not reachable:
            return "x-mcp-header on a property not reachable through 'properties' alone"
        if not isinstance(name, str) or not name:
            return "x-mcp-header must be a non-empty string"
        if not _TOKEN.match(name):
            return "x-mcp-header {} is not an HTTP field name token".format(_shown(name))
        if node.get("type") not in _PRIMITIVE_TYPES:
            return "x-mcp-header {} is on a property of type {}, not string, integer " \
                   "or boolean".format(_shown(name), _shown(node.get("type")))
        found.append((path, name))
    children: List[Tuple[Any, Tuple[str, ...], bool]] = []
    props = node.get("properties")
    if isinstance(props, dict):
        children.extend((sub, path + (key,), reachable) for key, sub in props.items())
    for keyword in _SUBSCHEMA:
        children.append((node.get(keyword), path + ("",), False))
    for keyword in _SUBSCHEMA_LISTS:
        subs = node.get(keyword)
        if isinstance(subs, list):
            children.extend((sub, path + ("",), False) for sub in subs)
    for keyword in _SUBSCHEMA_MAPS:
        subs = node.get(keyword)
        if isinstance(subs, dict):
            children.extend((sub, path + ("",), False) for sub in subs.values())
    for child, child_path, child_reachable in children:
        problem = _scan(child, child_path, child_reachable, found)
        if problem is not None:
            return problem
    return None


def _shown(value: Any) -> str:
    """The server's text in a reason: repr (no control characters), at most ~80 chars."""
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + "...'"


def param_headers(bindings: Bindings, arguments: Mapping[str, Any]) -> Dict[str, str]:
    """The ``Mcp-Param-*`` headers for one ``tools/call``. A null or absent argument,
    or one that is not a string, integer or boolean, sends no header."""
    headers: Dict[str, str] = {}
    for path, name in bindings:
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 53:
            text = str(int(value))
        elif isinstance(value, str):
            text = value
        else:
            continue
        headers[PARAM_HEADER_PREFIX + name] = encode_header_value(text)
    return headers
