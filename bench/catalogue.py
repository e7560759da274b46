"""The benchmark catalogue: N generated products spread over M categories, inserted in bulk."""
from __future__ import annotations

from shop.catalog.search import product_search_text
from shop.catalog.tables import Category, Product

CATEGORIES = 20
PRODUCTS = 2000
# Prices end in zero: Checkout.com refuses totals that do not (the shop never rounds).
# Enough that neither carts (capped at 99 a line) nor the checkout phase ever run a product out.
BENCH_STOCK = 1_000_000
_BATCH = 500


async def add_catalogue(products: int = PRODUCTS, categories: int = CATEGORIES, prefix: str = "bench") -> None:
    """Add `categories` categories and `products` products (round-robin over them), every one
    in stock and with a price that varies, so pages look like a real shop's."""
    await Category.insert(*[
        Category(slug=f"{prefix}-category-{c}", name_en=f"Category {c}", name_ar=f"فئة {c}", position=100 + c)
        for c in range(categories)
    ])
    ids = [r["id"] for r in await Category.select(Category.id).where(Category.slug.like(f"{prefix}-category-%"))
           .order_by(Category.id)]
    rows = []
    for n in range(products):
        name_en, name_ar = f"Product {prefix} {n}", f"منتج {n}"
        rows.append(Product(
            slug=f"{prefix}-product-{n}", category=ids[n % len(ids)], name_en=name_en, name_ar=name_ar,
            description_en=f"A description of product {n}, long enough to look like one. " * 3,
            description_ar=f"وصف المنتج {n}. " * 6, price_fils=250 + (n * 37) % 5_000 * 10,
            stock=BENCH_STOCK, reserved=0, featured=n % 97 == 0,
            search_text=product_search_text(name_en, name_ar),
        ))
    for start in range(0, len(rows), _BATCH):
        await Product.insert(*rows[start:start + _BATCH])
