"""Statements written once (shop.sql) behave as Piccolo's own queries on both databases."""
from datetime import datetime

import pytest

from shop.db import write_transaction
from shop.orders.tables import Order
from shop.payments.tables import PaymentEvent
from shop.sql import Insert, Statement
from tests.integration.conftest import make_order, make_product

pytestmark = pytest.mark.asyncio

_EVENT = Insert(PaymentEvent, returning="*")
_EVENTS_WITH_NOTE = Statement(PaymentEvent, "SELECT id, note, signature_ok FROM payment_event WHERE note = {}")


async def test_values_are_parameters_in_each_dialect() -> None:
    statement = Statement(Order, "SELECT id FROM shop_order WHERE reference = {} AND total_fils > {}")
    assert statement._compiled == {
        "sqlite": "SELECT id FROM shop_order WHERE reference = ? AND total_fils > ?",
        "postgres": "SELECT id FROM shop_order WHERE reference = $1 AND total_fils > $2",
    }


async def test_an_insert_names_only_real_columns() -> None:
    with pytest.raises(TypeError, match="no such columns: nope"):
        await _EVENT.row(provider="tap", nope=1)


async def test_an_insert_fills_the_columns_defaults_and_returns_the_row() -> None:
    row = await _EVENT.row(provider="tap", kind="note", payload="{}", note="defaults", signature_ok=True)
    assert row["provider"] == "tap" and row["status_before"] == "" and row["attempt"] is None
    assert isinstance(row["created_at"], datetime) and row["created_at"].tzinfo is not None
    # Read back through Piccolo: the same types as a row Piccolo wrote.
    again = await PaymentEvent.select().where(PaymentEvent.id == row["id"]).first()
    assert again == row


async def test_statements_join_the_transaction_and_roll_back_with_it() -> None:
    with pytest.raises(RuntimeError):
        async with write_transaction(PaymentEvent._meta.db):
            await _EVENT.row(provider="tap", kind="note", payload="{}", note="rolled back")
            assert len(await _EVENTS_WITH_NOTE.rows("rolled back")) == 1  # seen inside
            raise RuntimeError("undo")
    assert await _EVENTS_WITH_NOTE.rows("rolled back") == []


async def test_selected_booleans_and_numbers_keep_their_types() -> None:
    await _EVENT.row(provider="tap", kind="note", payload="{}", note="typed", signature_ok=False)
    (row,) = await _EVENTS_WITH_NOTE.rows("typed")
    assert row["signature_ok"] is False and isinstance(row["id"], int)


async def test_placing_an_order_returns_what_piccolo_reads_back() -> None:
    order = await make_order([(await make_product(), 2)])
    assert order == await Order.select().where(Order.id == order["id"]).first()


async def test_pages_served_at_once_get_the_version_and_their_own_cart_counts() -> None:
    """On PostgreSQL these pages share one statement; on SQLite each reads on its own."""
    import asyncio

    from shop.cart.services import add_item, new_cart_token
    from shop.catalog.cache import version_and_cart_count

    first, second = await make_product(), await make_product()
    two_lines, one_line = new_cart_token(), new_cart_token()
    await add_item(two_lines, first["id"], 2)
    await add_item(two_lines, second["id"], 1)
    await add_item(one_line, first["id"], 4)
    (version,) = [row["version"] for row in await Order.raw("SELECT version FROM catalog_version WHERE id = 1")]
    answers = await asyncio.gather(*(version_and_cart_count(token) for token in
                                     (two_lines, one_line, None, "no-such-cart", two_lines)))
    assert answers == [(version, 3), (version, 4), (version, 0), (version, 0), (version, 3)]
