"""The Jinja environment: autoescaping, gettext bound to the request's language, money filters."""
from __future__ import annotations

from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.base import csrf_token
from litestar.template.config import TemplateConfig
from markupsafe import Markup

from shop import i18n
from shop.catalog.images import image_url
from shop.clock import kuwait_time_text
from shop.money import format_kwd
from shop.paths import TEMPLATES_DIR

HTMX_FILE = "js/htmx-2.0.11.min.js"


def _format_kwd(fils: int) -> str:
    return format_kwd(int(fils), i18n.current_language.get())


def _localized(row: object, field: str) -> str:
    return i18n.localized(row, field)


def _query(base: dict[str, object] | None = None, **changes: object) -> str:
    """Query string keeping the current filters, with `changes` applied (None drops a key)."""
    merged = {**(base or {}), **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


CSRF_PLACEHOLDER = "\x00csrf\x00"


@pass_context
def _rendered_once(context: Context, store: dict[str, str], caller) -> Markup:  # type: ignore[no-untyped-def]
    """`{% call rendered_once(store) %}...{% endcall %}`: the block's HTML, rendered once per
    language into `store` (which must live exactly as long as the data the block shows). The
    customer's own CSRF token, the one per-customer thing in a product grid, is put back in."""
    token = csrf_token(context)
    language = i18n.current_language.get()
    html = store.get(language)
    if html is None:
        html = str(caller())
        if not token:
            return Markup(html)
        html = store[language] = html.replace(token, CSRF_PLACEHOLDER)
    return Markup(html.replace(CSRF_PLACEHOLDER, token))


def build_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(("html", "xml", "svg"), default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        enable_async=False,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda message, **kw: i18n.gettext(message, **kw),
        ngettext=lambda s, p, n, **kw: i18n.ngettext(s, p, n, **kw),
        newstyle=True,
    )
    env.filters["kwd"] = _format_kwd
    env.globals.update(
        localized=_localized,
        query=_query,
        current_language=i18n.current_language.get,
        text_direction=lambda: i18n.text_direction(i18n.current_language.get()),
        language_names=i18n.LANGUAGE_NAMES,
        htmx_file=HTMX_FILE,
        image_url=image_url,
        kuwait_time=kuwait_time_text,
        rendered_once=_rendered_once,
    )
    return env


def template_config() -> TemplateConfig:
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(build_environment()))
