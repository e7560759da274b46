"""`shop seed`: the demo catalogue, inserted by slug so running it again changes nothing."""
from __future__ import annotations

from dataclasses import dataclass

from shop.catalog import demo_data
from shop.catalog.search import product_search_text
from shop.catalog.tables import Category, Product
from shop.paths import STATIC_DIR


@dataclass(frozen=True, slots=True)
class SeedResult:
    categories_created: int
    products_created: int


async def seed_demo_catalogue() -> SeedResult:
    """Create the demo categories and products that are missing; never overwrite existing ones.

    Idempotent: staff edits (price, stock, names) survive a second run.
    """
    existing_categories = {r["slug"]: r["id"] for r in await Category.select(Category.slug, Category.id)}
    new_categories = [
        Category(slug=c["slug"], name_en=c["name_en"], name_ar=c["name_ar"], position=c["position"])
        for c in demo_data.CATEGORIES
        if c["slug"] not in existing_categories
    ]
    if new_categories:
        await Category.insert(*new_categories)
        existing_categories = {r["slug"]: r["id"] for r in await Category.select(Category.slug, Category.id)}

    existing_products = {r["slug"] for r in await Product.select(Product.slug)}
    new_products = []
    for p in demo_data.PRODUCTS:
        if p["slug"] in existing_products:
            continue
        image = f"products/{p['slug']}.svg"
        new_products.append(
            Product(
                slug=p["slug"],
                category=existing_categories[p["category"]],
                name_en=p["name_en"],
                name_ar=p["name_ar"],
                description_en=p["description_en"],
                description_ar=p["description_ar"],
                price_fils=p["price_fils"],
                stock=p["stock"],
                reserved=0,
                image=image if (STATIC_DIR / image).is_file() else "",
                featured=p["featured"],
                search_text=product_search_text(p["name_en"], p["name_ar"]),
            )
        )
    if new_products:
        await Product.insert(*new_products)
    return SeedResult(len(new_categories), len(new_products))
