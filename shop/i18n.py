"""Languages: the current one per request, and Babel message catalogs compiled at start-up."""
from __future__ import annotations

import io
from contextvars import ContextVar
from functools import cache

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from shop.paths import LOCALE_DIR

LANGUAGES = ("en", "ar")
DEFAULT_LANGUAGE = "en"
RTL_LANGUAGES = frozenset({"ar"})
LANGUAGE_NAMES = {"en": "English", "ar": "العربية"}
LANGUAGE_COOKIE = "lang"

current_language: ContextVar[str] = ContextVar("current_language", default=DEFAULT_LANGUAGE)


@cache
def translations(language: str) -> NullTranslations:
    """Compile the language's .po in memory, so the repo holds text catalogs only."""
    po_path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if language == DEFAULT_LANGUAGE or not po_path.is_file():
        return NullTranslations()
    with po_path.open("rb") as po_file:
        catalog = read_po(po_file, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def gettext(message: str, **variables: object) -> str:
    text = translations(current_language.get()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: object) -> str:
    text = translations(current_language.get()).ngettext(singular, plural, n)
    return text % {"num": n, **variables}


_ = gettext


def pick_language(query_value: str | None, cookie_value: str | None, accept_language: str | None) -> str:
    """`?lang=` wins, then the remembered cookie, then the browser's first preference."""
    for candidate in (query_value, cookie_value):
        if candidate in LANGUAGES:
            return candidate
    if accept_language:
        first = accept_language.split(",")[0].strip().lower()
        if first.startswith("ar"):
            return "ar"
    return DEFAULT_LANGUAGE


def text_direction(language: str) -> str:
    return "rtl" if language in RTL_LANGUAGES else "ltr"


def localized(row: object, field: str, language: str | None = None) -> str:
    """`name` of a bilingual row: row['name_ar'] in Arabic (falling back to English)."""
    language = language or current_language.get()
    get = row.get if isinstance(row, dict) else lambda key, default="": getattr(row, key, default)
    value = get(f"{field}_{language}", "") or ""
    return value or (get(f"{field}_{DEFAULT_LANGUAGE}", "") or "")
