"""The block I/O protocol between a node's device (`blockdev.py`, the FUSE file a loop device
sits on) and the node's stand-in kernel daemon (`kernel.py`), which owns the data.

One Unix stream socket; a client may open several connections, each carrying one request at
a time. A request is `REQUEST` (op, minor, offset, length), followed for a write by `length`
bytes. The answer is `REPLY` (errno, length), 0 for success or a positive errno, followed for
a successful read by `length` bytes. The daemon answers a write only when it is as durable as
the resource's protocol promises (protocol C: on both disks).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

READ, WRITE, FLUSH = 1, 2, 3
REQUEST = struct.Struct("!B3xIQI")
REPLY = struct.Struct("!iI")
SOCKET_NAME = "drbd-io.sock"


def recv_exact(sock: socket.socket, n: int, on_timeout: Callable[[], None] | None = None) -> bytes:
    """Exactly `n` bytes, or ConnectionError when the other side closed. On a socket with a
    timeout, `on_timeout` is called at each one (it raises to give up); without it, the
    timeout ends the wait."""
    chunks = []
    while n:
        try:
            chunk = sock.recv(min(n, 1 << 20))
        except TimeoutError:
            if on_timeout is None:
                raise
            on_timeout()
            continue
        if not chunk:
            raise ConnectionError("block I/O socket closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
