#!/usr/bin/env python3
"""A small backend for examples/gateway.yaml: answers every request with JSON naming itself,
and echoes what an `Upgrade` (WebSocket) connection sends after a 101.

    python3 examples/backend.py 9001 one &
    python3 examples/backend.py 9002 two &

Standard library only; for demos, not for load.
"""
import asyncio
import json
import sys


async def serve(reader, writer, name):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            if "upgrade" in headers.get("connection", "").lower():
                writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                             b"Upgrade: " + headers.get("upgrade", "websocket").encode() + b"\r\n\r\n")
                await writer.drain()
                while data := await reader.read(4096):
                    writer.write(data)
                    await writer.drain()
                return
            length = int(headers.get("content-length", "0"))
            body = (await reader.readexactly(length)).decode("utf-8", "replace") if length else ""
            answer = json.dumps({"backend": name, "method": method, "path": path, "body": body,
                                 "user": headers.get("x-user")}, separators=(",", ":")).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port, name):
    server = await asyncio.start_server(lambda r, w: serve(r, w, name), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else sys.argv[1]))
