"""A wasi:http component in Python, built with componentize-py: greets, then echoes what it was asked.

Build: scripts/guest-build.sh python examples/hello-python/app.py hello-python.wasm
"""
import os

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.types import Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam


def read_body(request: IncomingRequest) -> bytes:
    body = b""
    with request.consume() as incoming:
        with incoming.stream() as stream:
            while True:
                try:
                    body += stream.blocking_read(65536)
                except Err:  # the stream is closed: the whole body has been read
                    break
    return body


def send(response_out: ResponseOutparam, status: int, headers: list, data: bytes) -> None:
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as out:
        for i in range(0, len(data), 4096):  # a stream takes at most 4 KiB per blocking write
            out.blocking_write_and_flush(data[i:i + 4096])
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = type(request.method()).__name__.removeprefix("Method_").upper()
        headers = dict(request.headers().entries())
        body = read_body(request)
        text = "\n".join([
            f"hello from Python! ({os.environ.get('GREETING', 'no greeting')})",
            f"method={method}",
            f"path={request.path_with_query() or '/'}",
            f"x-test={headers.get('x-test', b'').decode()}",
            f"body={body.decode(errors='replace')}",
        ]) + "\n"
        send(response_out, 200, [("content-type", b"text/plain; charset=utf-8"), ("x-lang", b"python")], text.encode())
