"""The hand-written baseline for bench/gateway.py: one Starlette endpoint doing the
same storage read and JSON encoding as GET /jobengine/sources/{id}, minus gRPC
messages, interceptors and transcoding.

    python bench/handwritten.py --database-url URL --port N
"""

from __future__ import annotations

import argparse
import hashlib
import json
from datetime import UTC

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.storage.db import Database
from server.storage.repositories.sources import read_source


def build(db: Database) -> Starlette:
    async def source(request: Request) -> Response:
        tenant = request.headers.get("x-stella-tenant")
        if not tenant:
            return Response(
                b'{"error":"X-Stella-Tenant required"}', 400, media_type="application/json"
            )
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = build(Database(args.database_url))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
