"""The hand-written baseline for bench/transcoding.py: one Starlette endpoint doing the
same work as GET /jobengine/sources/{id} (verify the bearer token with the server's
own verifier, check the tenant, read the source, encode JSON with an ETag), minus gRPC
messages, interceptors and transcoding.

    python bench/handwritten.py --database-url URL --public-url URL --port N
        [--gc-gen0-threshold N]

`--gc-gen0-threshold` gives this process the garbage-collector setting `orchestrator
serve` applies after start-up (server/garbage_collection.py); without it the endpoint
runs on Python's defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from datetime import UTC

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import garbage_collection
from server.identity.components import Identity
from server.identity.resource_server.principal import TokenRejected
from server.storage.db import Database
from server.storage.repositories.sources import read_source


def build(db: Database, identity: Identity) -> Starlette:
    async def source(request: Request) -> Response:
        try:
            principal = await identity.verifier.verify(
                request.headers.get("authorization"),
                None,
                http_method="GET",
                http_url=identity.urls.endpoint(request.url.path),
            )
        except TokenRejected as exc:
            return Response(
                json.dumps({"error": str(exc)}).encode(), 401, media_type="application/json"
            )
        tenant = principal.tenant
        named = request.headers.get("x-stella-tenant")
        if tenant is None or (named and named != tenant):
            return Response(b'{"error":"tenant forbidden"}', 403, media_type="application/json")
        async with db.read() as conn:
            row = await read_source(conn, tenant_id=tenant, source_id=request.path_params["id"])
        if row is None:
            return Response(b'{"error":"not found"}', 404, media_type="application/json")
        body = json.dumps(
            {
                "sourceId": row.source_id,
                "name": row.name,
                "sourceType": row.source_type,
                "enabled": row.enabled,
                "paused": row.paused,
                "createdAt": row.created_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
                "updatedAt": row.updated_at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"),
            },
            separators=(",", ":"),
        ).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
        headers = {"Cache-Control": "private, max-age=60, stale-if-error=300", "ETag": etag}
        return Response(body, 200, headers, media_type="application/json")

    return Starlette(routes=[Route("/sources/{id}", source)])


async def serve(
    database_url: str, public_url: str, port: int, gc_gen0_threshold: int | None
) -> None:
    db = Database(database_url)
    identity = await Identity.start(db, public_url=public_url)
    config = uvicorn.Config(
        build(db, identity), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    if gc_gen0_threshold is not None:
        garbage_collection.tune(gc_gen0_threshold)
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--public-url", required=True, help="the server's token issuer")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gc-gen0-threshold", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(serve(args.database_url, args.public_url, args.port, args.gc_gen0_threshold))


if __name__ == "__main__":
    main()
