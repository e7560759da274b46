"""The ceiling: a bare Litestar + Jinja page rendering 24 in-memory products, no database,
no sessions, no CSRF. The shop's pages are measured against it in the same run."""
from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape
from litestar import Litestar, get
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>All products</title>
<link rel="stylesheet" href="/static/css/site.css"></head>
<body><header><a href="/">Shop</a><form action="/products"><input type="search" name="q"></form>
<a href="/cart">Cart</a></header>
<main><h1>All products</h1><p>{{ total }} products</p><div class="product-grid">
{% for p in products %}<article class="product-card" data-slug="{{ p.slug }}">
<a href="/products/{{ p.slug }}"><img src="/static/products/{{ p.slug }}.svg" alt="" width="200" height="200">
<h3>{{ p.name }}</h3></a><p class="price">{{ "%d.%03d"|format(p.price_fils // 1000, p.price_fils % 1000) }} KWD</p>
<p class="stock">In stock</p>
<form method="post" action="/cart/items"><input type="hidden" name="product_id" value="{{ p.id }}">
<input type="number" name="quantity" value="1" min="1" max="99"><button type="submit">Add to cart</button></form>
</article>{% endfor %}</div></main><footer>Prices in Kuwaiti dinar.</footer></body></html>
"""
PRODUCTS = [
    {"id": n, "slug": f"product-{n}", "name": f"Product {n}", "price_fils": 250 + n * 1_037} for n in range(24)
]


@get("/products", sync_to_thread=False)
def products() -> Template:
    return Template("list.html", context={"products": PRODUCTS, "total": 2000})


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    env = Environment(loader=DictLoader({"list.html": PAGE}), autoescape=select_autoescape(), auto_reload=False)
    return Litestar(
        route_handlers=[products, healthz],
        template_config=TemplateConfig(instance=JinjaTemplateEngine.from_environment(env)),
        openapi_config=None,
    )
