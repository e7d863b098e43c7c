"""Server-sent events parsing for MCPClient (WHATWG HTML §9.2, "Server-sent events").

Pure functions over bytes, no I/O. Memory stays close to the size of the largest event:
a line is copied out of the read buffer once, the buffer drops it before the line is
handed on, and field values are decoded straight from the line's bytes. (A naive
split/slice/decode/join chain holds about seven copies of a 16 MiB event at once.)
"""

import re
from typing import Iterable, Iterator, List, NamedTuple, Optional

from .errors import ProtocolError

__all__ = ["SSEEvent", "SSEParser", "iter_lines", "iter_sse_events"]

_EOL = re.compile(b"[\r\n]")
_BOM = b"\xef\xbb\xbf"
# A line longer than this is cut out of the read buffer at once, so the buffer never
# holds a big line while the line is being processed.
_COMPACT = 65536


class SSEEvent(NamedTuple):
    event: str
    data: str
    id: str


def iter_lines(chunks: Iterable[bytes], limit: int, what: str,
               status: int) -> Iterator[bytes]:
    """Split a byte stream into lines ended by CRLF, LF or CR (WHATWG HTML §9.2.5).

    A CR at the end of a chunk waits for the next one, which may start with its LF.
    More than ``limit`` bytes in total raise ProtocolError. An unterminated last line
    cannot complete an event: it is dropped.
    """
    buf = bytearray()
    scan = 0
    total = 0
    for chunk in chunks:
        if not chunk:
            continue
        total += len(chunk)
        if total > limit:
            raise ProtocolError("{} exceeds the {} byte limit".format(what, limit),
                                status_code=status)
        buf.extend(chunk)
        del chunk
        start = 0
        while True:
            match = _EOL.search(buf, scan)
            if match is None:
                scan = len(buf)
                break
            end = match.start()
            if buf[end] == 0x0D:
                if end + 1 == len(buf):
                    scan = end  # maybe CRLF split across chunks
                    break
                nxt = end + 2 if buf[end + 1] == 0x0A else end + 1
            else:
                nxt = end + 1
            with memoryview(buf) as view:
                line = view[start:end].tobytes()
            if end - start > _COMPACT:
                # A big line: drop it from the buffer before it is handed on.
                del buf[:nxt]
                nxt = 0
            start = scan = nxt
            yield line
            del line
        if start:
            del buf[:start]
            scan -= start
    if buf.endswith(b"\r"):
        yield bytes(buf[:-1])


class SSEParser(object):
    """Event-stream interpretation (WHATWG HTML §9.2.6) that remembers, across the
    streams of one reply, the last event ID (for ``Last-Event-ID`` on reconnection) and
    the reconnection time the server set with ``retry``."""

    def __init__(self) -> None:
        self.last_event_id = ""
        #: The ``retry`` value in milliseconds, once the server sent one.
        self.retry_ms: Optional[int] = None

    def events(self, lines: Iterable[bytes]) -> Iterator[SSEEvent]:
        """Dispatched events: ``data`` values joined with LF, ``event`` naming the type
        (default "message"); an ``id`` containing NUL is ignored; comments (``:``) and
        unknown fields are ignored; an event still pending when the stream ends is
        discarded. The last event ID is kept even for an event without data (a priming
        event)."""
        data: List[str] = []
        event = ""
        pending_id = self.last_event_id
        first = True
        for raw in lines:
            if first:
                first = False
                if raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
            if not raw:
                self.last_event_id = pending_id
                if data:
                    joined = "\n".join(data)
                    data = []
                    yield SSEEvent(event or "message", joined, pending_id)
                    del joined
                event = ""
                continue
            if raw[:1] == b":":
                continue
            colon = raw.find(b":")
            if colon < 0:
                field, start = raw, len(raw)
            else:
                field, start = raw[:colon], colon + 1
                if raw[start:start + 1] == b" ":
                    start += 1
            if field == b"data":
                with memoryview(raw) as view:
                    data.append(str(view[start:], "utf-8", "replace"))
            elif field == b"event":
                event = raw[start:].decode("utf-8", "replace")
            elif field == b"id":
                value = raw[start:]
                if b"\x00" not in value:
                    pending_id = value.decode("utf-8", "replace")
            elif field == b"retry":
                value = raw[start:]
                if value.isdigit() and len(value) <= 10:
                    self.retry_ms = int(value)


def iter_sse_events(lines: Iterable[bytes]) -> Iterator[SSEEvent]:
    """The events of one stream (see :meth:`SSEParser.events`)."""
    return SSEParser().events(lines)
