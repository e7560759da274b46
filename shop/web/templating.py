"""The Jinja environment: autoescaping, gettext bound to the request's language, money filters."""
from __future__ import annotations

from functools import cache
from typing import Any, Iterator, MutableMapping
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, Template, TemplateNotFound, pass_context, select_autoescape
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from jinja2.runtime import Context
from litestar.exceptions import TemplateNotFoundException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.base import csrf_token, url_for, url_for_static_asset
from litestar.template.config import TemplateConfig
from markupsafe import Markup, escape

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


# Written where a customer's CSRF token goes by templates that know no request (the product
# macros); the page cache (shop/web/page_cache.py) puts each customer's own in its place.
CSRF_PLACEHOLDER = "\x00csrf\x00"


@pass_context
def _csrf_field(context: Context) -> Markup:
    """The hidden field holding the customer's CSRF token, for forms that work without htmx."""
    # Markup.format would cost 20 us a field through string.Formatter; escape() is one C call.
    return Markup(f'<input type="hidden" name="_csrf_token" value="{escape(csrf_token(context))}">')


class FixedTextTranslation(Extension):
    """Translates `_("fixed text")` when a template is compiled, not each time it is rendered.

    Most of a page's texts take no variables, yet each `_()` call costs a trip through Jinja's
    call machinery, the catalog and a Markup format on every render (a fifth of a catalogue
    page's time). Each language has its own environment (`environment.shop_language`), so the
    call becomes a constant Jinja folds into the compiled template. The result is what the
    runtime call gives: the translation, formatted with no variables (so `%%` is `%`), marked
    safe. Calls with variables, and `ngettext`, still run per render."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        translations = i18n.translations(self.environment.shop_language)  # type: ignore[attr-defined]
        window: list[Token] = []
        previous: Token | None = None
        for token in stream:
            window.append(token)
            if len(window) < 4:
                continue
            name, open_, text, close = window
            if (name.type == "name" and name.value in ("_", "gettext") and open_.type == "lparen"
                    and text.type == "string" and close.type == "rparen"
                    and (previous is None or previous.type != "dot")):
                translated = translations.gettext(text.value) % {}
                yield Token(name.lineno, "string", translated)
                yield Token(name.lineno, "pipe", "|")
                yield Token(name.lineno, "name", "safe")
                previous = close
                window = []
            else:
                previous = window.pop(0)
                yield previous
        yield from window


class ShopEnvironment(Environment):
    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict. Jinja's ChainMap over the environment's
        globals is copied into a new context by every render, include and import, at 14 us a
        copy (ChainMap.__iter__): a tenth of a cart page. The ChainMap would show globals set
        after a template loaded; every one here is set as the environment is built, as Jinja asks."""
        return {**self.globals, **(d or {})}


# Litestar's template callables, set when the environment is built (see make_globals);
# the engine registers the same functions again.
LITESTAR_CALLABLES = {"csrf_token": csrf_token, "url_for": url_for, "url_for_static_asset": url_for_static_asset}


def build_environment(language: str = i18n.DEFAULT_LANGUAGE) -> Environment:
    """The Jinja environment whose templates speak `language`."""
    env = ShopEnvironment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(("html", "xml", "svg"), default_for_string=True),
        extensions=["jinja2.ext.i18n", FixedTextTranslation],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        enable_async=False,
    )
    env.shop_language = language  # type: ignore[attr-defined]
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
        csrf_placeholder=CSRF_PLACEHOLDER,
        csrf_field=_csrf_field,
        **{name: pass_context(function) for name, function in LITESTAR_CALLABLES.items()},
    )
    return env


@cache
def environment_for(language: str) -> Environment:
    """The environment of `language`, built once per process: pages and emails share it."""
    return build_environment(language if language in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE)


# What customers see; staff pages, receipts and the sandbox compile on first use.
STOREFRONT_TEMPLATES = ("base.html", "layout.html", "_partials/", "catalog/", "cart/", "checkout/", "orders/", "errors/")


def compile_storefront_templates() -> None:
    """Compiles the storefront's templates in every language before the first customer comes.
    Compiling takes Jinja 150 ms a language, and a new worker's first pages (and every request
    queued behind them) would otherwise wait for it."""
    for language in i18n.LANGUAGES:
        environment = environment_for(language)
        for name in environment.list_templates(filter_func=lambda name: name.startswith(STOREFRONT_TEMPLATES)):
            environment.get_template(name)


class BilingualTemplateEngine(JinjaTemplateEngine):
    """Litestar's Jinja engine over one environment per language, picked by the request's."""

    def __init__(self) -> None:
        self.environments = {language: environment_for(language) for language in i18n.LANGUAGES}
        super().__init__(engine_instance=self.environments[i18n.DEFAULT_LANGUAGE])

    def get_template(self, template_name: str) -> Template:
        environment = self.environments.get(i18n.current_language.get()) or self.engine
        try:
            return environment.get_template(template_name)
        except TemplateNotFound as exc:
            raise TemplateNotFoundException(template_name=template_name) from exc

    def register_template_callable(self, key: str, template_callable: Any) -> None:
        if key in LITESTAR_CALLABLES:
            return  # set as each environment was built
        for environment in self.environments.values():
            if len(environment.cache or ()):  # type: ignore[arg-type]
                raise RuntimeError(f"template global {key!r} registered after templates were loaded")
            environment.globals[key] = pass_context(template_callable)


def template_config() -> TemplateConfig:
    return TemplateConfig(instance=BilingualTemplateEngine())
