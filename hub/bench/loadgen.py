"""A lean HTTP/1.1 client for ``cardhub bench``'s load phases.

On a two-core machine the load generator shares the CPU with the hub it measures: every
microsecond the client spends is one the hub does not get, and shows up as hub latency.
This client sends pre-encoded requests over kept-alive connections and reads back only
what it needs (status, Retry-After, the JSON body), at a fraction of a general client's
cost per request. It speaks just enough HTTP for the hub: Content-Length bodies, no
chunking, no redirects.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import msgspec


@dataclass(slots=True)
class Response:
    status: int
    retry_after: float | None
    body: bytes

    def json(self) -> object:
        return msgspec.json.decode(self.body)


class LeanClient:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def post(self, path: str, body: bytes) -> Response:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("ascii") + body
        reader, writer = self._idle.pop() if self._idle else await self._connect()
        try:
            writer.write(request)
            response, keep = await _read_response(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return response

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._all.append(writer)
        return reader, writer

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
        self._all.clear()
        self._idle.clear()


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, retry_after, keep = 0, None, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "retry-after":
            retry_after = float(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
        elif name == "transfer-encoding":
            raise ValueError("chunked responses are not supported by the bench client")
    body = await reader.readexactly(length) if length else b""
    return Response(status, retry_after, body), keep
