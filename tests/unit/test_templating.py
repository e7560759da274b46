"""Fixed texts are translated when a template is compiled, exactly as the runtime call would."""
from __future__ import annotations

import pytest

from shop import i18n
from shop.web.templating import compile_storefront_templates, environment_for


def render(language: str, source: str, **context: object) -> str:
    token = i18n.current_language.set(language)
    try:
        return environment_for(language).from_string(source).render(**context)
    finally:
        i18n.current_language.reset(token)


def test_a_fixed_text_is_compiled_into_the_template_of_each_language() -> None:
    source = '<a title="{{ _(\'Cart\') }}">{{ _("Cart") }}</a>'
    assert render("en", source) == '<a title="Cart">Cart</a>'
    assert render("ar", source) == '<a title="السلة">السلة</a>'
    # No call is left: the compiled template holds the Arabic text itself.
    code = environment_for("ar").compile(source, raw=True)
    assert "السلة" in code and "gettext" not in code


def test_texts_with_variables_and_plurals_still_run_per_render() -> None:
    source = '{{ _("Page %(page)s of %(pages)s", page=n, pages=9) }} {{ ngettext("%(num)s item", "%(num)s items", n) }}'
    assert render("en", source, n=2) == "Page 2 of 9 2 items"
    assert render("en", source, n=1) == "Page 1 of 9 1 item"
    arabic = render("ar", source, n=2)
    assert "2" in arabic and "9" in arabic and "Page" not in arabic


def test_a_compiled_text_is_formatted_and_escaped_as_the_runtime_call_would() -> None:
    # The runtime call formats every text (so "%%" is "%") and marks the translation safe;
    # variables are still escaped.
    assert render("en", '{{ _("100%% KNET") }}') == "100% KNET"
    assert render("en", '{{ _("a %(x)s b", x=v) }}', v="<script>") == "a &lt;script&gt; b"
    assert render("en", '{{ (_("Cart") ~ v) }}', v="<b>") == "Cart&lt;b&gt;"


@pytest.mark.parametrize(("source", "expected"), [
    ('{{ x._("Cart") }}', "method:Cart"),  # a method named _ is not gettext
    ('{{ _(name) }}', "السلة"),  # a variable: translated at render time
    ('{{ _("Cart", ) }}', "السلة"),
])
def test_other_calls_are_left_to_run_at_render_time(source: str, expected: str) -> None:
    class Holder:
        def _(self, text: str) -> str:
            return f"method:{text}"

    assert render("ar", source, x=Holder(), name="Cart") == expected


def test_storefront_templates_are_compiled_before_the_first_customer(monkeypatch: pytest.MonkeyPatch) -> None:
    environment_for.cache_clear()  # new environments: nothing compiled by earlier tests
    compile_storefront_templates()
    # Nothing is read from disk again: every storefront page's template is already compiled.
    for language in i18n.LANGUAGES:
        environment = environment_for(language)
        monkeypatch.setattr(environment.loader, "get_source", lambda *a: pytest.fail(f"{a[1]} compiled late"))
        for name in ("catalog/list.html", "catalog/product.html", "cart/cart.html", "checkout/checkout.html",
                     "orders/order.html", "errors/error.html", "layout.html"):
            assert environment.get_template(name).render is not None
