"""Plain SQL on the shop's database, for cases that count what happened (or set stock up).

Write `?` placeholders; they become `$1, $2 ...` on PostgreSQL."""
from __future__ import annotations

import asyncio
import re
import sqlite3
from typing import Any

from torture.harness import Shop


def _postgres_sql(sql: str) -> str:
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


async def fetch(shop: Shop, sql: str, *args: Any) -> list[dict[str, Any]]:
    if shop.backend == "sqlite":
        return await asyncio.to_thread(_sqlite, shop.database_url, sql, args)
    import asyncpg

    connection = await asyncpg.connect(dsn=shop.database_url)
    try:
        return [dict(row) for row in await connection.fetch(_postgres_sql(sql), *args)]
    finally:
        await connection.close()


async def value(shop: Shop, sql: str, *args: Any) -> Any:
    rows = await fetch(shop, sql, *args)
    return next(iter(rows[0].values())) if rows else None


def _sqlite(database_url: str, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        rows = [dict(row) for row in connection.execute(sql, args).fetchall()]
        connection.commit()
        return rows
    finally:
        connection.close()
