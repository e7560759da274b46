"""Catalogue queries for the storefront: categories, featured products, search, product pages."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shop.catalog.search import MAX_TERMS, search_terms
from shop.catalog.tables import Category, Product
from shop.sql import Statement

# A joined column built once: Piccolo deep-copies a column on every join step (the cart's
# Piccolo query uses it).
CATEGORY_ACTIVE = Product.category.active

# The catalogue's reads as SQL written once: building them through Piccolo cost more than
# running them, and a new page is rendered after every catalogue change.
_CARD_COLUMNS = ("product.id, product.slug, product.name_en, product.name_ar, product.price_fils, product.stock, "
                 "product.reserved, product.image")
_FROM = "FROM product JOIN category ON category.id = product.category"
_LISTED = f"{_FROM} WHERE product.active = TRUE AND category.active = TRUE"
_ORDER = "ORDER BY category.position, product.id"
_FEATURED = Statement(Product, f"SELECT {_CARD_COLUMNS} {_LISTED} AND product.featured = TRUE {_ORDER} LIMIT {{}}")
_PRODUCT_BY_SLUG = Statement(Product, f"""
    SELECT {_CARD_COLUMNS}, product.description_en, product.description_ar, category.slug AS category_slug,
           category.name_en AS category_name_en, category.name_ar AS category_name_ar
    {_LISTED} AND product.slug = {{}} LIMIT 1""")


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
    return [_with_availability(r) for r in await _FEATURED.rows(limit)]


@lru_cache(maxsize=2 * (MAX_TERMS + 1))
def _search_statements(in_category: bool, terms: int) -> tuple[Statement, Statement]:
    """The count and the page of one search's shape (a category or not, how many words)."""
    condition = _LISTED + (" AND category.id = {}" if in_category else "") + " AND product.search_text LIKE {}" * terms
    count = Statement(Product, f"SELECT COUNT(*) AS count {condition}")
    # Sort and skip narrow rows (ids) in a subquery, then fetch the page's 24 whole rows: half the
    # time of sorting every matching row whole, and still one statement.
    page = Statement(Product, f"""
        SELECT {_CARD_COLUMNS} {_FROM}
        WHERE product.id IN (SELECT product.id {condition} {_ORDER} LIMIT {{}} OFFSET {{}}) {_ORDER}""")
    return count, page


async def search_products(
    query: str, category: dict[str, Any] | None, page: int, page_size: int
) -> ProductPage:
    """Active products matching every word of `query` (English or Arabic), newest categories first."""
    terms = search_terms(query)
    values = ([category["id"]] if category is not None else []) + [f"%{term}%" for term in terms]
    count, page_rows = _search_statements(category is not None, len(terms))
    total = int((await count.rows(*values))[0]["count"])
    pages = max(1, -(-total // page_size))
    page = min(max(page, 1), pages)
    rows = await page_rows.rows(*values, page_size, (page - 1) * page_size)
    return ProductPage([_with_availability(r) for r in rows], total, page, pages, category)


async def product_by_slug(slug: str) -> dict[str, Any] | None:
    row = await _PRODUCT_BY_SLUG.first(slug)
    return _with_availability(row) if row else None
