"""The `shop` command: serve, migrate, seed, demo (the one-command offline start)."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from shop.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"shop: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _migrate() -> bool:
    os.environ["PICCOLO_CONF"] = "shop.piccolo_conf"
    from piccolo.apps.migrations.commands.forwards import run_forwards

    result = await run_forwards(app_name="shop", migration_id="all")
    if not result.success:
        print(f"shop: migration failed: {result.message}", file=sys.stderr)
    return result.success


def migrate(settings: Settings) -> int:
    return 0 if asyncio.run(_migrate()) else 1


def seed(settings: Settings) -> int:
    from shop.catalog.seed import seed_demo_catalogue
    from shop.db import bind_tables, make_engine
    from shop.tables import TABLES

    bind_tables(make_engine(settings.database_url), TABLES)
    result = asyncio.run(seed_demo_catalogue())
    print(f"seeded {result.categories_created} categories and {result.products_created} products")
    return 0


def reconcile(settings: Settings) -> int:
    """One reconciliation pass now (the app's background loop does the same on a timer)."""
    from shop.db import bind_tables, make_engine
    from shop.notifications.outbox import deliver_pending
    from shop.payments.reconcile import expire_abandoned_orders, reconcile_once, settle_pending_refunds
    from shop.payments.registry import new_http_client
    from shop.tables import TABLES

    bind_tables(make_engine(settings.database_url), TABLES)

    async def run() -> int:
        async with new_http_client(settings) as client:
            # By hand: every open attempt now, not only those whose next check is due.
            report = await reconcile_once(settings, client, due_only=False)
            refunds = await settle_pending_refunds(settings, client)
            abandoned = await expire_abandoned_orders()
            emails = await deliver_pending(settings.smtp_url, settings.email_from)
        print(f"checked {report.checked}, settled {report.settled}, expired {report.expired}, "
              f"unreachable {report.unreachable}, refunds settled {refunds}, abandoned orders expired {abandoned}, "
              f"emails {emails}")
        for error in report.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1 if report.errors else 0

    return asyncio.run(run())


def createstaff(settings: Settings, email: str, role: str, password_stdin: bool) -> int:
    """Create a staff account (or reset its password and role)."""
    import getpass

    from shop.db import bind_tables, make_engine
    from shop.tables import TABLES
    from shop.staff.auth import PasswordTooWeak, Role, create_staff

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password (12 characters or more): ")
        if getpass.getpass("Again: ") != password:
            print("shop: the passwords differ", file=sys.stderr)
            return 2
    bind_tables(make_engine(settings.database_url), TABLES)
    try:
        user = asyncio.run(create_staff(email, password, Role(role)))
    except (PasswordTooWeak, ValueError) as exc:
        print(f"shop: {exc}", file=sys.stderr)
        return 2
    print(f"staff account {user['email']} ({user['role']}) ready")
    return 0


def providers_table() -> str:
    """The capability table of every provider, and the settings each needs to go live (markdown)."""
    from shop.payments.registry import ADAPTERS, offline_provider

    live = Settings(secret_key="x" * 40, sandbox=False)
    rows = [
        "| provider | redirect | return verified by | webhook verified by | inquiry | refunds | partial refunds "
        "| expiry | payment links | settings to go live |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    yes_no = {True: "yes", False: "no"}
    for slug in ADAPTERS:
        provider = offline_provider(slug, live)
        c = provider.capabilities
        needed = ", ".join(f"`{name}`" for name in provider.missing_credentials())
        rows.append(
            f"| `{slug}` | {'303 GET' if c.redirect == 'get' else 'auto-submitted form POST'} | {c.return_verification} "
            f"| {c.webhook_verification} | {yes_no[c.inquiry]} | {yes_no[c.refunds]} | {yes_no[c.partial_refunds]} "
            f"| {c.expiry_seconds // 60} min | {yes_no[c.payment_links]} | {needed} |"
        )
    return "\n".join(rows)


# uvicorn reads X-Forwarded-* itself (proxy_headers); granian serves the app behind the same logic.
APP_FACTORIES = {"uvicorn": "shop.app:create_app", "granian": "shop.app:create_proxied_app"}


def run_server(target: str, server: str, host: str, port: int, workers: int) -> None:
    """Serve the ASGI app factory `target` ("module:function") until stopped, with `workers`
    processes. Access logs are off: they cost a tenth of the throughput and the shop logs what
    matters itself."""
    if server == "granian":
        from granian.constants import Interfaces, Loops
        from granian.server import Server

        # A worker that dies is replaced (granian's default is to stop the whole server), unless it
        # dies again within seconds of its restart: granian then stops anyway.
        Server(target, address=host, port=port, interface=Interfaces.ASGI, workers=workers, factory=True,
               loop=Loops.uvloop, websockets=False, log_access=False, respawn_failed_workers=True,
               respawn_interval=0.5).serve()
        return
    import uvicorn

    from shop.web.server import ShopHttpProtocol

    # uvloop and httptools come with uvicorn[standard]; uvicorn picks uvloop when present, and
    # the shop's protocol is httptools' with each response sent in one packet.
    uvicorn.run(target, factory=True, host=host, port=port, workers=workers, proxy_headers=True,
                server_header=False, log_level="info", access_log=False, http=ShopHttpProtocol)


def serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> int:
    host = host or settings.host
    port = port or settings.port
    print(f"shop: serving on http://{host}:{port} ({settings.env}, {settings.database_url.split('://')[0]}, "
          f"{settings.server})", flush=True)
    run_server(APP_FACTORIES[settings.server], settings.server, host, port, workers or settings.workers)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shop", description="The KNET storefront.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the web server")
    serve_parser.add_argument("--host")
    serve_parser.add_argument("--port", type=int)
    serve_parser.add_argument("--workers", type=int)
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("seed", help="load the demo catalogue (idempotent)")
    commands.add_parser("reconcile", help="ask providers about open payments now, expire stale ones")
    commands.add_parser("providers", help="print each provider's capabilities and go-live settings")
    staff_parser = commands.add_parser("createstaff", help="create a staff account (asks for the password)")
    staff_parser.add_argument("email")
    staff_parser.add_argument("--role", choices=["owner", "operations", "finance"], default="owner")
    staff_parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    demo_parser = commands.add_parser("demo", help="migrate, seed and serve the offline demo")
    demo_parser.add_argument("--host")
    demo_parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)

    if args.command == "providers":
        print(providers_table())
        return 0
    settings = _settings()
    if args.command in ("serve", "demo"):
        from shop.payments.choice import check_default_provider

        try:
            check_default_provider(settings)
        except SettingsError as exc:
            print(f"shop: {exc}", file=sys.stderr)
            return 2
    if args.command == "serve":
        return serve(settings, args.host, args.port, args.workers)
    if args.command == "migrate":
        return migrate(settings)
    if args.command == "seed":
        return seed(settings)
    if args.command == "reconcile":
        return reconcile(settings)
    if args.command == "createstaff":
        return createstaff(settings, args.email, args.role, args.password_stdin)
    if args.command == "demo":
        if settings.production:
            print("shop: demo is for development; use migrate and serve in production", file=sys.stderr)
            return 2
        return migrate(settings) or seed(settings) or serve(settings, args.host, args.port, 1)
    parser.error(f"unknown command {args.command}")
    return 2
