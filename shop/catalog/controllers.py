"""Storefront pages: home, product list with search and filter, product page."""
from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from shop.catalog import services
from shop.web.pages import app_settings, is_htmx, page_context


class CatalogController(Controller):
    @get("/", name="home")
    async def home(self, request: Request) -> Template:
        context = await page_context(
            request,
            featured=await services.featured_products(),
            categories=await services.list_categories(),
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
        categories = await services.list_categories()
        chosen = next((c for c in categories if c["slug"] == category), None)
        if category and chosen is None:
            raise NotFoundException("unknown category")
        page_number = int(page) if page.isascii() and page.isdigit() else 1
        result = await services.search_products(q, chosen, page_number, app_settings(request).page_size)
        context = await page_context(
            request, result=result, categories=categories, q=q, category_slug=category
        )
        name = "catalog/_results.html" if is_htmx(request) else "catalog/list.html"
        return Template(name, context=context)

    @get("/products/{slug:str}", name="product")
    async def product(self, request: Request, slug: FromPath[str]) -> Template:
        product = await services.product_by_slug(slug[:200])
        if product is None:
            raise NotFoundException("unknown product")
        return Template("catalog/product.html", context=await page_context(request, product=product))
