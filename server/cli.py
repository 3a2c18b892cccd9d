"""`orchestrator` command line: serve, migrate, tenants, clients, keys, definitions
(DESIGN.md §6)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.bindings import BindingError
from gateway.standalone import DescriptorSetError, serve_arguments
from gateway.standalone import add_arguments as add_gateway_arguments
from server import garbage_collection, http_surface, logs
from server.app import Application
from server.cli_definitions import add_definitions_commands, load_definition
from server.config import ConfigError, load_settings
from server.dev import DEMO_TENANT, bootstrap
from server.domain.errors import DomainError
from server.identity.authorization_server import clients
from server.identity.authorization_server.keys import rotate_keys
from server.interceptors.tenancy import IDENTIFIER_PATTERN, IDENTIFIER_RULE
from server.storage.db import Database
from server.storage.repositories.tenants import get_tenant
from server.storage.tables import TenantRow

_TENANT_ID = re.compile(IDENTIFIER_PATTERN)


def tenant_id(value: str) -> str:
    """An argparse type: a tenant id as the X-Stella-Tenant header accepts it (the one
    rule, server/interceptors/tenancy.py), so no tenant is created that no request can
    name; argparse turns the ArgumentTypeError into usage and exit status 2."""
    if not _TENANT_ID.fullmatch(value):
        shown = repr(value) if len(value) <= 80 else f"{value[:20]!r}... ({len(value)} characters)"
        raise argparse.ArgumentTypeError(f"tenant id {shown} {IDENTIFIER_RULE}")
    return value


def tenant_ids(value: str) -> list[str]:
    """An argparse type: a comma-separated list of tenant ids (may be empty)."""
    return [tenant_id(item.strip()) for item in value.split(",") if item.strip()]


async def _serve(dev: bool) -> int:
    settings = load_settings()
    logs.configure(settings.log_level)
    app = Application(settings)
    # Handlers first: a SIGTERM during start-up or the dev bootstrap still drains and exits 0.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except OSError as exc:  # the HTTP socket (server/app.py _bind)
        where = f"{settings.host}:{settings.port}"
        return _cannot_start(f"cannot listen on {where} (PORT): {exc.strerror or exc}")
    except RuntimeError as exc:  # grpc's add_insecure_port: "Failed to bind to address"
        if "bind" not in str(exc):
            raise
        where = f"{settings.host}:{settings.grpc_port}"
        return _cannot_start(f"cannot listen on {where} (GRPC_PORT): address in use")
    created = await bootstrap(app.db) if dev else None
    if created is not None:
        base = app.settings.public_url  # the issuer: DPoP proofs name this URL
        client_id, secret = created.client.client_id, created.client_secret
        print(
            f"dev bootstrap: tenant {DEMO_TENANT!r} with demo sources.\n"
            f"dev client (all scopes, shown once):\n"
            f"  client_id={client_id}\n"
            f"  client_secret={secret}\n"
            f"Try:\n"
            f"  TOKEN=$(curl -s -u {client_id}:{secret} -d grant_type=client_credentials "
            f"{base}/oauth/token | python3 -c 'import json,sys; "
            f'print(json.load(sys.stdin)["access_token"])\')\n'
            f'  curl -H "Authorization: Bearer $TOKEN" {base}/jobengine/sources',
            flush=True,
        )
    garbage_collection.tune(settings.gc_gen0_threshold)  # start-up done: freeze it
    await stop.wait()
    await app.stop()
    return 0


def _cannot_start(problem: str) -> int:
    """Print why the server could not start and return exit status 1 (a runtime
    failure, not a configuration error)."""
    print(f"orchestrator: {problem}", file=sys.stderr, flush=True)
    return 1


async def _migrate() -> int:
    db = Database(load_settings().database_url)
    try:
        await db.migrate()
    finally:
        await db.dispose()
    print("database is at the newest schema", flush=True)
    return 0


async def _create_tenant(tenant_id: str, display_name: str) -> int:
    db = Database(load_settings().database_url)
    try:
        await db.migrate()
        async with db.transaction() as session:
            if await get_tenant(session, tenant_id) is not None:
                print(f"tenant {tenant_id!r} already exists", file=sys.stderr)
                return 1
            session.add(TenantRow(tenant_id=tenant_id, display_name=display_name or tenant_id))
    finally:
        await db.dispose()
    print(json.dumps({"tenant_id": tenant_id}), flush=True)
    return 0


def _gateway(args: argparse.Namespace) -> int:
    settings = load_settings()
    logs.configure(settings.log_level)
    # Modules are imported; the descriptor set, read next, stays young until collected.
    garbage_collection.tune(settings.gc_gen0_threshold)
    try:
        return asyncio.run(
            serve_arguments(
                args, config=http_surface.proxy_config(), cors=http_surface.cors_rules()
            )
        )
    except (DescriptorSetError, BindingError) as exc:
        print(f"orchestrator gateway: {exc}", file=sys.stderr)
        return 2


async def _with_db(action: Callable[[Database], Awaitable[int]]) -> int:
    """Run one command against the migrated database; domain errors exit 1."""
    db = Database(load_settings().database_url)
    try:
        await db.migrate()
        return await action(db)
    except DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()


def _client_json(client: clients.Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "display_name": client.display_name,
        "tenant": client.tenant,
        "tenants": list(client.tenants),
        "scopes": list(client.scopes),
        "permissions": list(client.permissions),
        "require_dpop": client.require_dpop,
        "disabled": client.disabled,
    }


def _print_secret(created: clients.CreatedClient, as_json: bool) -> None:
    client_id, secret = created.client.client_id, created.client_secret
    if as_json:
        print(json.dumps({"client_id": client_id, "client_secret": secret}), flush=True)
    else:
        print(f"client_id: {client_id}\nclient_secret: {secret}\n(shown once)", flush=True)


async def _clients(args: argparse.Namespace, db: Database) -> int:
    if args.clients_command == "create":
        tenants: list[str] = args.tenants or []
        created = await clients.create_client(
            db,
            scopes=args.scope,
            tenant=args.tenant,
            tenants=tenants,
            permissions=args.permission,
            require_dpop=args.require_dpop,
            display_name=args.name,
            client_id=args.client_id,
        )
        _print_secret(created, args.json)
    elif args.clients_command == "list":
        listed = await clients.list_clients(db)
        if args.json:
            print(json.dumps([_client_json(c) for c in listed]), flush=True)
        for c in [] if args.json else listed:
            state = "disabled" if c.disabled else "enabled"
            tenancy = c.tenant or f"operator[{','.join(c.tenants)}]"
            print(f"{c.client_id}\t{tenancy}\t{' '.join(c.scopes)}\t{state}", flush=True)
    elif args.clients_command == "rotate-secret":
        _print_secret(await clients.rotate_secret(db, client_id=args.client_id), args.json)
    else:
        disabled = await clients.disable_client(db, client_id=args.client_id)
        print(json.dumps({"client_id": disabled.client_id, "disabled": True}), flush=True)
    return 0


async def _keys(db: Database) -> int:
    print(json.dumps({"kid": await rotate_keys(db)}), flush=True)
    return 0


def _add_client_commands(commands: Any) -> None:
    parser = commands.add_parser("clients", help="manage OAuth clients")
    sub = parser.add_subparsers(dest="clients_command", required=True)
    create = sub.add_parser("create", help="register a client; prints its secret once")
    tenancy = create.add_mutually_exclusive_group(required=True)
    tenancy.add_argument(
        "--tenant", type=tenant_id, help="bind the client to this tenant (immutable)"
    )
    tenancy.add_argument(
        "--tenants", type=tenant_ids, help="operator client for these tenants (A,B; may be empty)"
    )
    create.add_argument("--scope", action="append", default=[], help="a scope; repeatable")
    create.add_argument("--permission", action="append", default=[], help="repeatable")
    create.add_argument("--require-dpop", action="store_true", help="refuse tokens without DPoP")
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--client-id", default=None, help="choose the id (default: generated)")
    create.add_argument("--json", action="store_true", help="print JSON")
    listing = sub.add_parser("list", help="list clients (never secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    rotate = sub.add_parser("rotate-secret", help="replace a client's secret; prints it once")
    rotate.add_argument("client_id")
    rotate.add_argument("--json", action="store_true", help="print JSON")
    disable = sub.add_parser("disable", help="refuse a client and its tokens")
    disable.add_argument("client_id")
    keys = commands.add_parser("keys", help="manage token signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("rotate", help="new current key; the old one stays published")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve gRPC and HTTP (migrates on start)")
    serve.add_argument("--dev", action="store_true", help="seed demo data on an empty database")
    commands.add_parser("migrate", help="apply database migrations")
    proxy = commands.add_parser(
        "gateway", help="serve the HTTP bindings of a descriptor set in front of a gRPC server"
    )
    add_gateway_arguments(proxy)
    tenants = commands.add_parser("tenants", help="manage tenants")
    tenant_commands = tenants.add_subparsers(dest="tenant_command", required=True)
    create = tenant_commands.add_parser("create", help="create a tenant")
    create.add_argument("tenant_id", type=tenant_id)
    create.add_argument("--name", default="")
    _add_client_commands(commands)
    add_definitions_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a configuration error (server/config.py ConfigError) is one line
    on stderr and exit status 2, like a usage error."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"orchestrator: configuration error: {exc}", file=sys.stderr, flush=True)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return asyncio.run(_serve(args.dev))
    if args.command == "gateway":
        return _gateway(args)
    if args.command == "migrate":
        return asyncio.run(_migrate())
    if args.command == "tenants":
        return asyncio.run(_create_tenant(args.tenant_id, args.name))
    if args.command == "clients":
        return asyncio.run(_with_db(lambda db: _clients(args, db)))
    if args.command == "keys":
        return asyncio.run(_with_db(_keys))
    if args.command == "definitions":
        return asyncio.run(_with_db(lambda db: load_definition(args, db)))
    return 2


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
