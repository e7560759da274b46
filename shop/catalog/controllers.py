"""Storefront pages: home, product list with search and filter, product page."""
from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from shop.catalog import services
from shop.catalog.cache import version_and_cart_count
from shop.web.pages import app_settings, cart_token, catalogue_cache, is_htmx, page_context


class CatalogController(Controller):
    @get("/", name="home")
    async def home(self, request: Request) -> Template:
        version, cart_count = await version_and_cart_count(cart_token(request))
        cache = catalogue_cache(request)
        context = await page_context(
            request,
            cart_count=cart_count,
            fragments=cache.fragments(version),
            featured=await cache.get(version, "featured", services.featured_products),
            categories=await cache.get(version, "categories", services.list_categories),
        )
        return Template("catalog/home.html", context=context)

    @get("/products", name="products")
    async def products(
        self,
        request: Request,
        q: Annotated[str, QueryParameter(name="q", max_length=200)] = "",
        category: Annotated[str, QueryParameter(name="category", max_length=80)] = "",
        page: Annotated[str, QueryParameter(name="page", max_length=10)] = "1",
    ) -> Template:
        version, cart_count = await version_and_cart_count(cart_token(request))
        cache = catalogue_cache(request)
        categories = await cache.get(version, "categories", services.list_categories)
        chosen = next((c for c in categories if c["slug"] == category), None)
        if category and chosen is None:
            raise NotFoundException("unknown category")
        page_number = int(page) if page.isascii() and page.isdigit() else 1
        page_size = app_settings(request).page_size
        result = await cache.get(version, ("search", q, category, page_number),
                                 lambda: services.search_products(q, chosen, page_number, page_size))
        context = await page_context(
            request, cart_count=cart_count, result=result, categories=categories, q=q, category_slug=category,
            fragments=cache.fragments(version),
        )
        name = "catalog/_results.html" if is_htmx(request) else "catalog/list.html"
        return Template(name, context=context)

    @get("/products/{slug:str}", name="product")
    async def product(self, request: Request, slug: FromPath[str]) -> Template:
        version, cart_count = await version_and_cart_count(cart_token(request))
        slug = slug[:200]
        cache = catalogue_cache(request)
        product = await cache.get(version, ("product", slug), lambda: services.product_by_slug(slug))
        if product is None:
            raise NotFoundException("unknown product")
        context = await page_context(request, cart_count=cart_count, product=product, fragments=cache.fragments(version))
        return Template("catalog/product.html", context=context)
