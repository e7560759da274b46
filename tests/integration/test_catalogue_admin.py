"""Catalogue administration services: validation, audited edits, stock that never cuts into
reservations, images told by their bytes. No HTTP in between."""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from shop.catalog import admin
from shop.catalog.search import product_search_text
from shop.catalog.tables import Category, Product
from shop.staff.auth import Role, Staff, create_staff
from shop.staff.tables import AuditLog
from tests.integration.conftest import make_order, make_product, product_row

pytestmark = pytest.mark.asyncio
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 64
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture(scope="module")
async def staff(database_url: str) -> Staff:
    """One operations account per backend (argon2 hashing is slow on purpose)."""
    row = await create_staff(f"ops-{secrets.token_hex(4)}@example.com", "catalogue tests password", Role.OPERATIONS)
    return Staff(row["id"], row["email"], Role.OPERATIONS, 0)


async def audit_rows(action: str, target_id: object) -> list[dict[str, Any]]:
    rows = await AuditLog.select().where(
        (AuditLog.action == action) & (AuditLog.target_id == str(target_id))).order_by(AuditLog.id)
    return [{**r, "before": json.loads(r["before"]), "after": json.loads(r["after"])} for r in rows]


async def a_category() -> int:
    return (await Category.select(Category.id).first())["id"]


def product_form(category: int, **changes: str) -> dict[str, str]:
    form = {"slug": "oud-" + secrets.token_hex(4), "category": str(category), "name_en": "Royal Oud",
            "name_ar": "عود ملكي", "description_en": "Smoky.\nRich.", "description_ar": "دخاني", "price": "12.5",
            "active": "1"}
    return {**form, **changes}


# --- validation (pure) ---

@pytest.mark.parametrize("text, fils", [("12.5", 12500), ("12.500", 12500), (" 7 ", 7000), ("0.001", 1),
                                        ("١٢٫٢٥٠", 12250), ("1,250.000", 1250000)])
async def test_prices_are_kwd_with_up_to_three_decimals(text: str, fils: int) -> None:
    assert admin.parse_price(text) == (fils, "")


@pytest.mark.parametrize("text, says", [("-1", "negative"), ("1.2345", "3 decimals"), ("0", "more than zero"),
                                        ("100000.001", "above"), ("1e3", "such as"), ("", "Enter a price"),
                                        ("12.5.0", "such as"), ("nan", "such as"),
                                        ("1,5", "such as")])
async def test_bad_prices_are_refused_with_a_reason(text: str, says: str) -> None:
    fils, message = admin.parse_price(text)
    assert fils is None and says in message


async def test_names_are_required_in_both_languages_and_slugs_are_checked() -> None:
    data, errors, values = admin.validate_product(product_form(1, name_ar=" ", slug="Bad Slug!", price="-2"))
    assert data is None and set(errors) == {"name_ar", "slug", "price"}
    assert values["name_en"] == "Royal Oud"  # shown again as typed
    data, errors, _ = admin.validate_product(product_form(1, slug="UPPER-case"))
    assert errors == {} and data is not None and data.slug == "upper-case" and data.active and not data.featured
    assert data.description_en == "Smoky.\nRich."
    assert admin.validate_category({"slug": "x", "name_en": "X", "name_ar": ""})[1].keys() == {"name_ar"}


async def test_stock_changes_are_relative_with_a_reason() -> None:
    assert admin.validate_adjustment({"delta": "+5", "reason": "delivery"})[0] == (5, "delivery")
    assert admin.validate_adjustment({"delta": "-٣", "reason": "broken"})[0] == (-3, "broken")
    for delta in ("0", "", "2.5", "+1000001", "five"):
        assert "delta" in admin.validate_adjustment({"delta": delta, "reason": "x"})[1]
    assert "reason" in admin.validate_adjustment({"delta": "1", "reason": "  "})[1]


async def test_images_are_told_by_their_bytes() -> None:
    assert [admin.sniff_image(d) for d in (PNG, JPEG, WEBP)] == ["png", "jpg", "webp"]
    assert admin.sniff_image(SVG) is None and admin.sniff_image(b"GIF89a") is None and admin.sniff_image(b"") is None


# --- products ---

async def test_create_then_edit_keeps_search_text_in_sync_and_audits_each_change(staff: Staff) -> None:
    data, _, _ = admin.validate_product(product_form(await a_category()))
    product = await admin.create_product(staff, data, stock=7)
    assert (product["price_fils"], product["stock"], product["reserved"]) == (12500, 7, 0)
    assert product["search_text"] == product_search_text("Royal Oud", "عود ملكي")
    [created] = await audit_rows("product.create", product["id"])
    assert created["before"] == {} and created["after"]["price_fils"] == 12500 and created["staff_email"] == staff.email

    edited, _, _ = admin.validate_product(product_form(data.category, slug=data.slug, name_en="Royal Oud Intense",
                                                       price="13.250", featured="1"))
    product = await admin.update_product(staff, product["id"], edited)
    assert product["search_text"] == product_search_text("Royal Oud Intense", "عود ملكي")
    assert product["price_fils"] == 13250 and product["featured"] and product["stock"] == 7
    [updated] = await audit_rows("product.update", product["id"])
    assert updated["before"] == {"name_en": "Royal Oud", "price_fils": 12500, "featured": False}
    assert updated["after"] == {"name_en": "Royal Oud Intense", "price_fils": 13250, "featured": True}

    await admin.update_product(staff, product["id"], edited)  # the same values again: nothing to record
    assert len(await audit_rows("product.update", product["id"])) == 1


async def test_deactivating_hides_without_deleting(staff: Staff) -> None:
    data, _, _ = admin.validate_product(product_form(await a_category()))
    product = await admin.create_product(staff, data)
    hidden, _, _ = admin.validate_product({**product_form(data.category, slug=data.slug), "active": ""})
    await admin.update_product(staff, product["id"], hidden)
    row = await product_row(product["id"])
    assert row is not None and row["active"] is False
    page = await admin.list_products(data.slug, status="inactive")
    assert [p["id"] for p in page.products] == [product["id"]]
    assert (await admin.list_products(data.slug, status="active")).total == 0


async def test_slugs_are_unique_and_categories_must_exist(staff: Staff) -> None:
    existing = await make_product()
    before = await Product.count()
    data, _, _ = admin.validate_product(product_form(await a_category(), slug=existing["slug"]))
    with pytest.raises(admin.CatalogueError) as refused:
        await admin.create_product(staff, data)
    assert "slug" in refused.value.errors
    data, _, _ = admin.validate_product(product_form(999_999))
    with pytest.raises(admin.CatalogueError) as refused:
        await admin.create_product(staff, data)
    assert "category" in refused.value.errors
    other = await make_product()
    data, _, _ = admin.validate_product(product_form(await a_category(), slug=existing["slug"]))
    with pytest.raises(admin.CatalogueError):
        await admin.update_product(staff, other["id"], data)
    assert await Product.count() == before + 1 and (await product_row(other["id"]))["slug"] == other["slug"]
    with pytest.raises(admin.NotFound):
        await admin.update_product(staff, 999_999, admin.validate_product(product_form(await a_category()))[0])


async def test_staff_search_finds_names_in_either_language_and_slugs() -> None:
    product = await make_product()
    await Product.update({Product.search_text: product_search_text("Saffron Tea", "شاي زعفران")}).where(
        Product.id == product["id"])
    for query in ("saffron", "زعفران", product["slug"]):
        assert product["id"] in [p["id"] for p in (await admin.list_products(query, page_size=200)).products]


# --- stock ---

async def test_relative_adjustments_are_audited_with_their_reason(staff: Staff) -> None:
    product = await make_product(stock=10)
    after = await admin.adjust_stock(staff, product["id"], +5, "delivery from supplier")
    assert (after["stock"], after["sellable"]) == (15, 15)
    after = await admin.adjust_stock(staff, product["id"], -12, "water damage")
    assert after["stock"] == 3
    rows = await audit_rows("product.stock", product["id"])
    assert [(r["before"]["stock"], r["after"]["stock"], r["reason"]) for r in rows] == [
        (10, 15, "delivery from supplier"), (15, 3, "water damage")]


async def test_an_adjustment_during_a_checkout_cannot_take_reserved_units(staff: Staff) -> None:
    product = await make_product(stock=5)
    await make_order([(product, 3)])  # placed, unpaid: 3 of the 5 are reserved
    assert (await product_row(product["id"]))["reserved"] == 3
    audits = await AuditLog.count()
    with pytest.raises(admin.StockRefused) as refused:
        await admin.adjust_stock(staff, product["id"], -3, "stocktake")
    assert "3 reserved" in refused.value.errors["delta"]
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (5, 3) and await AuditLog.count() == audits
    after = await admin.adjust_stock(staff, product["id"], -2, "stocktake")  # down to exactly the reservation
    assert (after["stock"], after["reserved"], after["sellable"]) == (3, 3, 0)
    with pytest.raises(admin.StockRefused):
        await admin.adjust_stock(staff, product["id"], -1, "stocktake")


async def test_stock_cannot_overflow_and_unknown_products_are_reported(staff: Staff) -> None:
    product = await make_product(stock=admin.MAX_STOCK - 1)
    with pytest.raises(admin.StockRefused):
        await admin.adjust_stock(staff, product["id"], 2, "typo")
    assert (await product_row(product["id"]))["stock"] == admin.MAX_STOCK - 1
    with pytest.raises(admin.NotFound):
        await admin.adjust_stock(staff, 999_999, 1, "x")


# --- images ---

async def test_an_image_replaces_the_old_one_only_once_it_is_saved(staff: Staff, tmp_path: Path) -> None:
    product = await make_product()
    first = await admin.set_product_image(staff, product["id"], PNG, tmp_path)
    assert admin._UPLOADED_IMAGE.match(first["image"]) and first["image"].endswith(".png")
    first_file = tmp_path / first["image"].removeprefix("/media/")
    assert first_file.read_bytes() == PNG
    for refused, too_large in ((SVG, False), (b"just text, named photo.png", False),
                               (PNG + b"\x00" * admin.IMAGE_MAX_BYTES, True)):
        with pytest.raises(admin.ImageRejected) as rejected:
            await admin.set_product_image(staff, product["id"], refused, tmp_path)
        assert rejected.value.too_large is too_large
    assert (await product_row(product["id"]))["image"] == first["image"] and first_file.exists()
    second = await admin.set_product_image(staff, product["id"], WEBP, tmp_path)
    assert second["image"].endswith(".webp") and second["image"] != first["image"]
    assert not first_file.exists() and sorted(p.name for p in (tmp_path / "products").iterdir()) == [
        second["image"].rsplit("/", 1)[1]]
    rows = await audit_rows("product.image", product["id"])
    assert [r["after"]["image"] for r in rows] == [first["image"], second["image"]]
    assert rows[1]["before"]["image"] == first["image"]


async def test_seeded_images_are_never_deleted(staff: Staff, tmp_path: Path) -> None:
    product = await make_product()
    await Product.update({Product.image: "products/placeholder.svg"}).where(Product.id == product["id"])
    updated = await admin.set_product_image(staff, product["id"], JPEG, tmp_path)
    assert updated["image"].endswith(".jpg")
    assert admin.image_url("products/placeholder.svg") == "/static/products/placeholder.svg"
    assert admin.image_url(updated["image"]) == updated["image"]


# --- categories ---

async def test_categories_are_bilingual_unique_and_audited(staff: Staff) -> None:
    slug = "tea-" + secrets.token_hex(3)
    data, errors, _ = admin.validate_category({"slug": slug, "name_en": "Tea", "name_ar": "شاي", "position": "5",
                                               "active": "1"})
    assert errors == {}
    category = await admin.create_category(staff, data)
    with pytest.raises(admin.CatalogueError):
        await admin.create_category(staff, data)
    hidden, _, _ = admin.validate_category({"slug": slug, "name_en": "Teas", "name_ar": "شاي", "position": "5"})
    updated = await admin.update_category(staff, category["id"], hidden)
    assert updated["name_en"] == "Teas" and updated["active"] is False
    [row] = await audit_rows("category.update", category["id"])
    assert row["before"] == {"name_en": "Tea", "active": True} and row["after"] == {"name_en": "Teas", "active": False}
    assert len(await audit_rows("category.create", category["id"])) == 1
