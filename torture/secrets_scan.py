"""Secrets: after every other case has run on the shop, its logs and every text column of its
database hold no credential, password or session cookie, and no card number."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Iterator

from shop.settings import SANDBOX_CREDENTIALS
from shop.sandbox.knet_page import TEST_CARD_APPROVED, TEST_CARD_DECLINED
from tests.support import TEST_SECRET
from torture.clients import used_secrets
from torture.figures import Figure, at_least, exactly
from torture.harness import Shop
from torture.registry import case

CASE = "secrets-scan"
# Identifiers that travel in the clear (in pages, URLs and provider forms) are not secrets.
SECRET_SETTINGS = ("CHECKOUT_SECRET_KEY", "CHECKOUT_WEBHOOK_SECRET", "APS_SHA_REQUEST_PHRASE",
                   "APS_SHA_RESPONSE_PHRASE", "TAP_SECRET_KEY", "UPAYMENTS_API_KEY", "KNET_TRANPORTAL_PASSWORD",
                   "KNET_RESOURCE_KEY")
# A card number stands apart from letters and digits: 16 digits inside a hex token are not one.
DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d{13,19}(?![0-9A-Za-z])")
TEXT_TYPES = ("text", "character varying", "json", "jsonb", "character")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def card_numbers(text: str, typed_only: bool = False) -> list[str]:
    """Digit runs that look like a card number: the sandbox test cards, or 16 digits passing Luhn.
    `typed_only`: just the test cards, for the sandbox's own records, whose random 15- to
    18-digit provider ids pass Luhn one time in ten (the test cards are all a sandbox is ever typed)."""
    found = [c for c in (TEST_CARD_APPROVED, TEST_CARD_DECLINED) if c in text]
    if typed_only:
        return found
    found += [m.group(0) for m in DIGIT_RUN.finditer(text) if len(m.group(0)) == 16 and luhn_valid(m.group(0))
              and m.group(0) not in found]
    return found


def secrets_of(shop: Shop) -> dict[str, str]:
    known = {name: SANDBOX_CREDENTIALS[name] for name in SECRET_SETTINGS}
    known["SHOP_SECRET_KEY"] = TEST_SECRET
    for i, value in enumerate(sorted(used_secrets(shop))):
        known[f"password or cookie #{i}"] = value
    return known


async def text_cells(shop: Shop) -> Iterator[tuple[str, str, str]]:
    """(table, column, value) for every non-empty text value in the shop's database."""
    cells = []
    if shop.backend == "sqlite":
        with sqlite3.connect(shop.database_url.removeprefix("sqlite:///")) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
                for column in columns:
                    for (value,) in db.execute(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL'):
                        if isinstance(value, (str, bytes)):
                            cells.append((table, column, value if isinstance(value, str) else value.decode("latin-1")))
        return cells
    import asyncpg

    db = await asyncpg.connect(dsn=shop.database_url)
    try:
        columns = await db.fetch("SELECT table_name, column_name FROM information_schema.columns "
                                 "WHERE table_schema = 'public' AND data_type = ANY($1::text[])", list(TEXT_TYPES))
        for row in columns:
            table, column = row["table_name"], row["column_name"]
            for value in await db.fetch(f'SELECT "{column}"::text AS v FROM "{table}" WHERE "{column}" IS NOT NULL'):
                cells.append((table, column, value["v"]))
    finally:
        await db.close()
    return cells


async def outbox_bodies(shop: Shop) -> list[str]:
    return [value for table, column, value in await text_cells(shop) if (table, column) == ("outbox_email", "body_text")]


def log_files(shop: Shop) -> list[Path]:
    """The shop's log, and those of any extra shop a case started in its folder."""
    return sorted({shop.log_path, *shop.work_dir.glob("*.log"), *shop.log_path.parent.glob("*.log")})


@case(CASE, order=100)
async def run(shop: Shop) -> list[Figure]:
    known = secrets_of(shop)
    leaks: list[str] = []
    cards: list[str] = []
    lines = 0
    for path in log_files(shop):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines += text.count("\n")
        leaks += [f"{path.name}: {name}" for name, value in known.items() if value in text]
        cards += [f"{path.name}: {c}" for c in card_numbers(text)]
    cells = await text_cells(shop)
    for table, column, value in cells:
        leaks += [f"{table}.{column}: {name}" for name, value_ in known.items() if value_ in value]
        cards += [f"{table}.{column}: {c}" for c in card_numbers(value, typed_only=table == "sandbox_record")]
    for found in sorted(set(leaks))[:10] + sorted(set(cards))[:10]:
        print(f"#   {CASE}: found {found}")
    return [
        exactly(CASE, "secrets in logs and database", len(leaks), 0),
        exactly(CASE, "card-number-like digit runs in logs and database", len(cards), 0),
        at_least(CASE, "log lines scanned", lines, 10),
        at_least(CASE, "database text values scanned", len(cells), 100),
        at_least(CASE, "secrets looked for", len(known), len(SECRET_SETTINGS) + 1),
    ]
