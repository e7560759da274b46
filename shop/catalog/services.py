"""Catalogue queries for the storefront: categories, featured products, search, product pages."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shop.catalog.search import search_terms
from shop.catalog.tables import Category, Product

# Joined columns are built once: Piccolo deep-copies a column on every join step and alias.
CATEGORY_ACTIVE = Product.category.active
CATEGORY_POSITION = Product.category.position
# What a product card needs; the product page adds descriptions and the joined category
# (which spares it a query).
CARD_FIELDS = (
    Product.id, Product.slug, Product.name_en, Product.name_ar, Product.price_fils, Product.stock,
    Product.reserved, Product.image,
)
PRODUCT_FIELDS = (
    *CARD_FIELDS, Product.description_en, Product.description_ar,
    Product.category.slug.as_alias("category_slug"),
    Product.category.name_en.as_alias("category_name_en"),
    Product.category.name_ar.as_alias("category_name_ar"),
)


def _with_availability(row: dict[str, Any]) -> dict[str, Any]:
    row["available"] = max(0, row["stock"] - row["reserved"])
    return row


@dataclass(frozen=True, slots=True)
class ProductPage:
    products: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    category: dict[str, Any] | None


async def list_categories() -> list[dict[str, Any]]:
    return await Category.select(Category.id, Category.slug, Category.name_en, Category.name_ar).where(
        Category.active.eq(True)
    ).order_by(Category.position).order_by(Category.id)


async def featured_products(limit: int = 8) -> list[dict[str, Any]]:
    rows = await Product.select(*CARD_FIELDS).where(
        Product.active.eq(True) & Product.featured.eq(True) & CATEGORY_ACTIVE.eq(True)
    ).order_by(CATEGORY_POSITION).order_by(Product.id).limit(limit)
    return [_with_availability(r) for r in rows]


async def search_products(
    query: str, category: dict[str, Any] | None, page: int, page_size: int
) -> ProductPage:
    """Active products matching every word of `query` (English or Arabic), newest categories first."""
    condition = Product.active.eq(True) & CATEGORY_ACTIVE.eq(True)
    if category is not None:
        condition &= Product.category.id == category["id"]
    for term in search_terms(query):
        condition &= Product.search_text.like(f"%{term}%")
    total = await Product.count().where(condition)
    pages = max(1, -(-total // page_size))
    page = min(max(page, 1), pages)
    # Sort and skip narrow rows (ids) in a subquery, then fetch the page's 24 whole rows: half the
    # time of sorting every matching row whole, and still one statement.
    page_ids = Product.select(Product.id).where(condition).order_by(CATEGORY_POSITION).order_by(
        Product.id
    ).limit(page_size).offset((page - 1) * page_size)
    rows = await Product.select(*CARD_FIELDS).where(Product.id.is_in(page_ids)).order_by(
        CATEGORY_POSITION
    ).order_by(Product.id)
    return ProductPage([_with_availability(r) for r in rows], total, page, pages, category)


async def product_by_slug(slug: str) -> dict[str, Any] | None:
    row = await Product.select(*PRODUCT_FIELDS).where(
        (Product.slug == slug) & Product.active.eq(True) & CATEGORY_ACTIVE.eq(True)
    ).first()
    return _with_availability(row) if row else None
