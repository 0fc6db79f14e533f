"""A TCP forwarder: makes the loopback-only API server reachable on the management bridge.

The node namespaces reach the control plane at 198.18.<n>.1; cutting a node's management
link therefore cuts it off from the API server, as on a real network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen: str, port: int, target_host: str, target_port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, listen, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target", default="127.0.0.1")
    p.add_argument("--target-port", type=int, required=True)
    args = p.parse_args(argv)
    asyncio.run(serve(args.listen, args.port, args.target, args.target_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
