"""Storefront pages: home, product list with search and filter, product page."""
from __future__ import annotations

from typing import Annotated, Any, Awaitable, Callable

from litestar import Controller, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from shop.catalog import services
from shop.catalog.cache import CatalogueCache, version_and_cart_count
from shop.web.page_cache import kept_page, render_page
from shop.web.pages import app_settings, cart_token, catalogue_cache, has_flashes, is_htmx, page_context

PageData = Callable[[CatalogueCache, int], Awaitable[dict[str, Any]]]


async def catalogue_page(request: Request, template_name: str, page_data: PageData) -> Response[bytes]:
    """The page as kept for this catalogue version, or rendered from `page_data(cache, version)`
    (which raises NotFoundException for what does not exist) and kept."""
    version, cart_count = await version_and_cart_count(cart_token(request))
    cache = catalogue_cache(request)
    pages = cache.pages(version)
    if not has_flashes(request) and (kept := kept_page(request, pages, template_name, cart_count)) is not None:
        return kept
    context = await page_context(request, cart_count=cart_count, **await page_data(cache, version))
    return render_page(request, pages, template_name, context)


class CatalogController(Controller):
    @get("/", name="home")
    async def home(self, request: Request) -> Response[bytes]:
        async def home_data(cache: CatalogueCache, version: int) -> dict[str, Any]:
            return {
                "featured": await cache.get(version, "featured", services.featured_products),
                "categories": await cache.get(version, "categories", services.list_categories),
            }

        return await catalogue_page(request, "catalog/home.html", home_data)

    @get("/products", name="products")
    async def products(
        self,
        request: Request,
        q: Annotated[str, QueryParameter(name="q", max_length=200)] = "",
        category: Annotated[str, QueryParameter(name="category", max_length=80)] = "",
        page: Annotated[str, QueryParameter(name="page", max_length=10)] = "1",
    ) -> Response[bytes]:
        async def results(cache: CatalogueCache, version: int) -> dict[str, Any]:
            categories = await cache.get(version, "categories", services.list_categories)
            chosen = next((c for c in categories if c["slug"] == category), None)
            if category and chosen is None:
                raise NotFoundException("unknown category")
            page_number = int(page) if page.isascii() and page.isdigit() else 1
            result = await services.search_products(q, chosen, page_number, app_settings(request).page_size)
            return {"result": result, "categories": categories, "q": q, "category_slug": category}

        name = "catalog/_results.html" if is_htmx(request) else "catalog/list.html"
        return await catalogue_page(request, name, results)

    @get("/products/{slug:str}", name="product")
    async def product(self, request: Request, slug: FromPath[str]) -> Response[bytes]:
        async def product_data(cache: CatalogueCache, version: int) -> dict[str, Any]:
            product = await services.product_by_slug(slug[:200])
            if product is None:
                raise NotFoundException("unknown product")
            return {"product": product}

        return await catalogue_page(request, "catalog/product.html", product_data)
