"""Search text: one normal form for English and Arabic, used for both stored names and queries."""
from __future__ import annotations

import re
import unicodedata

_ARABIC_MARKS = re.compile("[\u064b-\u0652\u0670\u0640]")  # harakat, dagger alef, tatweel
_LETTER_FORMS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
# LIKE wildcards and escapes are never meaningful in a customer's search.
_NOT_SEARCHABLE = re.compile(r"[%_\\]+")
MAX_TERMS = 6
MAX_QUERY_CHARS = 100


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _ARABIC_MARKS.sub("", text).translate(_LETTER_FORMS).translate(_DIGITS)
    return " ".join(_NOT_SEARCHABLE.sub(" ", text).split())


def search_terms(query: str) -> list[str]:
    """The distinct words of a customer's query, normalised, at most MAX_TERMS of them."""
    words = normalise(query[:MAX_QUERY_CHARS]).split()
    return list(dict.fromkeys(words))[:MAX_TERMS]


def product_search_text(name_en: str, name_ar: str) -> str:
    return normalise(f"{name_en} {name_ar}")
