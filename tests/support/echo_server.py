"""EchoService: a grpc.aio server for somebody else's API, run as its own process.

It answers what it was sent, so transcoding tests see exactly which request the
gateway built; `Fail` turns `name` into a status code with rich details, and the
metadata it sends back tests the header rules.

    python -m tests.support.echo_server [--port N]   # prints "port N" when ready
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import any_pb2, empty_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from tests.support import protos

pb = protos.echo_pb2()
pb_grpc = protos.echo_pb2_grpc()


class EchoService(pb_grpc.EchoServiceServicer):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        # Notes (echo.proto): id -> (text, version); a deleted id stays NOT_FOUND.
        self._notes: dict[str, tuple[str, int]] = {}
        self._deleted: set[str] = set()

    async def Echo(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.send_initial_metadata(_echo_headers(context))
        context.set_trailing_metadata((("x-echo-trailer", "done"),))
        return request

    async def GetKitchen(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.Kitchen(id=request.id, name=f"kitchen {request.id}")

    async def GetMyKitchen(
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
    ) -> Any:
        return pb.Kitchen(id="me", name="my kitchen")

    async def UpdateKitchen(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        kitchen = pb.Kitchen()
        kitchen.CopyFrom(request.kitchen)
        kitchen.update_mask.CopyFrom(request.update_mask)
        return kitchen

    async def DeleteKitchen(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return empty_pb2.Empty()

    async def ListKitchens(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        size = request.page_size or 2
        return pb.ListKitchensResponse(
            kitchens=[pb.Kitchen(id=f"{request.parent}/k{i}") for i in range(size)],
            next_page_token=request.page_token + "+",
        )

    async def GetFile(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.api import httpbody_pb2

        return httpbody_pb2.HttpBody(
            content_type="text/plain; charset=utf-8", data=request.path.encode()
        )

    async def Upload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        from google.api import httpbody_pb2

        return httpbody_pb2.HttpBody(
            content_type="application/x-echo",
            data=request.content_type.encode() + b"|" + request.data,
        )

    async def Fail(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _fail(request.name, context)

    async def Collect(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        """Every message received, in order; a message with `fail_with` fails the call."""
        await context.send_initial_metadata(_echo_headers(context))
        transcript = pb.Transcript()
        async for message in requests:
            if message.fail_with:
                await _fail(message.fail_with, context, after=len(transcript.messages))
            transcript.messages.append(message)
        return transcript

    async def Chat(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Each message answered as it arrives; one with `fail_with` ends the stream."""
        answered = 0
        async for message in requests:
            if message.fail_with:
                await _fail(message.fail_with, context, after=answered)
            yield message
            answered += 1

    async def Count(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        for i in range(request.count):
            if request.delay_ms:
                await asyncio.sleep(request.delay_ms / 1000)
            yield pb.Kitchen(id=str(i), i32=i)
        if request.count < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count must not be negative")

    async def GetNote(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._note(request.id, "", context)

    async def UpdateNote(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        note = await self._note(request.note.id, request.note.etag, context)
        return self._write(note.id, request.note.text, note)

    async def DeleteNote(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._note(request.id, request.etag, context)
        self._deleted.add(request.id)
        return empty_pb2.Empty()

    async def ResetNote(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        note = await self._note(request.id, "", context)
        return self._write(note.id, f"note {note.id}", note)

    async def CheckNote(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._note(request.id, "", context)

    async def _note(self, note_id: str, etag: str, context: grpc.aio.ServicerContext) -> Any:
        """The note, after AIP-154's check: a given etag that is not the current one
        is ABORTED; a deleted note is NOT_FOUND."""
        if note_id in self._deleted:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"note {note_id} was deleted")
        text, version = self._notes.setdefault(note_id, (f"note {note_id}", 1))
        note = pb.Note(id=note_id, text=text, etag=f"v{version}")
        if etag and etag != note.etag:
            await context.abort(
                grpc.StatusCode.ABORTED, f"etag {etag} is not the current etag of note {note_id}"
            )
        return note

    def _write(self, note_id: str, text: str, current: Any) -> Any:
        version = int(current.etag[1:]) + 1
        self._notes[note_id] = (text, version)
        return pb.Note(id=note_id, text=text, etag=f"v{version}")


async def _fail(name: str, context: grpc.aio.ServicerContext, *, after: int | None = None) -> None:
    """Abort with the google.rpc.Code called `name` (UNKNOWN if none is) and rich
    details; `after`: how many stream messages came before, said in the message."""
    names = code_pb2.Code.DESCRIPTOR.values_by_name
    code = names[name].number if name in names else code_pb2.UNKNOWN
    message = f"failed with {name}" if after is None else f"failed with {name} after {after}"
    status = status_pb2.Status(code=code, message=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="ECHO_FAILURE", domain="gwtest"))
    status.details.append(detail)
    grpc_code = next(c for c in grpc.StatusCode if c.value[0] == code)
    await context.abort(
        grpc_code, status.message, (("grpc-status-details-bin", status.SerializeToString()),)
    )


def _echo_headers(context: grpc.aio.ServicerContext) -> tuple[tuple[str, str], ...]:
    """Echo what the gateway forwarded, so header rules are visible in the response:
    every key, and the values of the `x-forwarded-*` keys (as JSON, in order)."""
    received = [(k, v) for k, v in context.invocation_metadata() or () if not k.endswith("-bin")]
    forwarded: dict[str, list[str]] = {}
    for key, value in received:
        if key.startswith("x-forwarded-"):
            forwarded.setdefault(key, []).append(str(value))
    return (
        ("x-echo-metadata", ",".join(sorted(k for k, _ in received))),
        ("x-echo-forwarded", json.dumps(forwarded, sort_keys=True)),
    )


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_EchoServiceServicer_to_server(EchoService(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"port {bound}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
