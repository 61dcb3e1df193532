"""An HTTP/3 client for palisade's tests, on aioquic (a QUIC and HTTP/3 implementation written apart from
palisade). One QUIC connection to ADDR with SNI NAME, trusting CA; every PATH is requested on it at once,
each on its own stream, and one JSON line per response is printed in the order given:
{"path", "status", "headers": {name: value, ...}, "length", "sha256", "body" (the first 200 bytes, as text)}.

Usage: h3.py ADDR NAME CA [--authority HOST] [--method M] [--body-file F] [--header NAME:VALUE]... [--hold SECONDS]
             PATH...
A response that does not complete within 60 s is printed as {"path", "error"}. With --hold, the connection
stays open that long after the responses (for connection-limit tests).
"""
import argparse
import asyncio
import hashlib
import json
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.pending = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset) and event.stream_id in self.pending:
            _, future = self.pending.pop(event.stream_id)
            future.set_exception(RuntimeError(f"stream reset with code {event.error_code}"))
            return
        for e in self.h3.handle_event(event):
            if not isinstance(e, (HeadersReceived, DataReceived)) or e.stream_id not in self.pending:
                continue
            response, future = self.pending[e.stream_id]
            if isinstance(e, HeadersReceived):
                response["headers"] += e.headers
            else:
                response["body"] += e.data
            if e.stream_ended:
                del self.pending[e.stream_id]
                future.set_result(response)

    async def request(self, method, authority, path, body, extra=()):
        stream = self._quic.get_next_available_stream_id()
        head = [(b":method", method.encode()), (b":scheme", b"https"), (b":authority", authority.encode()),
                (b":path", path.encode())]
        if body is not None:
            head.append((b"content-length", str(len(body)).encode()))
        head += [(name.encode(), value.encode()) for name, value in extra]
        self.h3.send_headers(stream, head, end_stream=body is None)
        if body is not None:
            self.h3.send_data(stream, body, end_stream=True)
        future = asyncio.get_running_loop().create_future()
        self.pending[stream] = ({"headers": [], "body": bytearray()}, future)
        self.transmit()
        return await future


def summary(path, response):
    headers = {}
    status = None
    for name, value in response["headers"]:
        name, value = name.decode(), value.decode(errors="replace")
        if name == ":status":
            status = int(value)
        elif name in headers:
            headers[name] += ", " + value
        else:
            headers[name] = value
    body = bytes(response["body"])
    return {"path": path, "status": status, "headers": headers, "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(), "body": body[:200].decode(errors="replace")}


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("name")
    p.add_argument("ca")
    p.add_argument("--authority")
    p.add_argument("--method", default="GET")
    p.add_argument("--body-file")
    p.add_argument("--hold", type=float, default=0)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("paths", nargs="+")
    args = p.parse_args()
    host, port = args.addr.rsplit(":", 1)
    body = open(args.body_file, "rb").read() if args.body_file else None
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=args.name)
    config.load_verify_locations(args.ca)
    config.max_stream_data = config.max_data = 64 * 1024 * 1024
    async with connect(host, int(port), configuration=config, create_protocol=Client) as client:
        async def one(path):
            try:
                extra = [h.split(":", 1) for h in args.header]
                request = client.request(args.method, args.authority or args.name, path, body, extra)
                r = await asyncio.wait_for(request, 60)
                return summary(path, r)
            except Exception as e:  # reported, so that the test says what went wrong
                return {"path": path, "error": repr(e)}
        for line in await asyncio.gather(*(one(path) for path in args.paths)):
            print(json.dumps(line), flush=True)
        await asyncio.sleep(args.hold)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:
        print(f"h3.py: {e!r}", file=sys.stderr)
        sys.exit(1)
