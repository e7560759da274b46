"""The Arabic catalog covers every message in shop/ and templates/, and loads at runtime.

When a test here fails, update the catalog (see docs/translations.md):
    pybabel extract ... && pybabel update -i shop/locale/messages.pot -d shop/locale -l ar
then translate the listed messages in shop/locale/ar/LC_MESSAGES/messages.po.
"""
from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from shop import i18n

ROOT = Path(__file__).resolve().parents[2]
BABEL_CFG = ROOT / "babel.cfg"
AR_PO = ROOT / "shop" / "locale" / "ar" / "LC_MESSAGES" / "messages.po"
SOURCE_DIRS = ("shop", "templates")
# The same keywords as `pybabel extract -k _ -k gettext -k ngettext:1,2`.
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}
PLACEHOLDER = re.compile(r"%\(([^)]*)\)[sdif]")


def _directory_filter(path: str) -> bool:
    """Like `--ignore-dirs ".* __pycache__"`; unlike Babel's default, keeps templates/_partials."""
    name = os.path.basename(path)
    if name.startswith(".") or name == "__pycache__":
        return False
    relative = Path(path).relative_to(ROOT)
    return len(relative.parts) > 1 or relative.parts[0] in SOURCE_DIRS


@cache
def extracted() -> dict[str | tuple[str, str], list[str]]:
    """Every message id (a tuple for plural messages) -> where it is used."""
    with BABEL_CFG.open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, filename=str(BABEL_CFG))
    found: dict[str | tuple[str, str], list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS, directory_filter=_directory_filter
    ):
        found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


@cache
def arabic() -> Catalog:
    with AR_PO.open("rb") as po_file:
        return read_po(po_file, locale="ar")


def _describe(msgid: str | tuple[str, str], places: list[str] | None = None) -> str:
    where = f"  ({', '.join(places[:3])})" if places else ""
    return f"  {msgid!r}{where}"


def _report(title: str, lines: list[str]) -> str:
    return f"{title} in {AR_PO.relative_to(ROOT)} ({len(lines)}):\n" + "\n".join(lines)


def _placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def _forms(message: Message) -> list[str]:
    return list(message.string) if isinstance(message.string, (tuple, list)) else [message.string]


def test_extraction_finds_messages_in_python_and_templates() -> None:
    places = [place for found in extracted().values() for place in found]
    assert any(place.startswith("shop/") for place in places), "no messages extracted from shop/"
    assert any(place.startswith("templates/") for place in places), "no messages extracted from templates/"
    assert ("%(num)s item", "%(num)s items") in extracted()


def test_every_message_has_an_arabic_translation() -> None:
    catalog = arabic()
    missing = []
    for msgid, places in sorted(extracted().items(), key=lambda item: str(item[0])):
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        message = catalog.get(key)
        if message is None or not message.string:
            missing.append(_describe(msgid, places))
            continue
        forms = _forms(message)
        if isinstance(msgid, tuple):
            if not message.pluralizable:
                missing.append(_describe(msgid, places) + "  <- in the catalog without its plural")
            elif len(forms) != catalog.num_plurals or not all(form.strip() for form in forms):
                missing.append(_describe(msgid, places) + f"  <- needs all {catalog.num_plurals} plural forms")
        elif not forms[0].strip():
            missing.append(_describe(msgid, places))
    assert not missing, _report("Messages without an Arabic translation", missing)


def test_no_translation_is_fuzzy() -> None:
    catalog = arabic()
    assert not catalog.fuzzy, f"the header of {AR_PO.relative_to(ROOT)} is marked fuzzy"
    fuzzy = [_describe(message.id) for message in catalog if message.id and message.fuzzy]
    assert not fuzzy, _report("Fuzzy translations (check them, then remove the '#, fuzzy' line)", fuzzy)


def test_translations_keep_every_placeholder() -> None:
    catalog = arabic()
    wrong = []
    for message in catalog:
        if not message.id or not message.string:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        expected = set().union(*(_placeholders(text) for text in ids))
        for index, form in enumerate(_forms(message)):
            found = _placeholders(form)
            if found != expected:
                label = f"msgstr[{index}]" if message.pluralizable else "msgstr"
                wrong.append(
                    f"{_describe(message.id)}  {label}: missing {sorted(expected - found)}, unknown {sorted(found - expected)}"
                )
    assert not wrong, _report("Translations whose %(name)s placeholders differ from the English", wrong)


def test_runtime_loads_the_arabic_catalog() -> None:
    assert i18n.translations("ar").gettext("Cart") == "السلة"
    assert i18n.translations("en").gettext("Cart") == "Cart"


@pytest.fixture
def in_arabic():
    token = i18n.current_language.set("ar")
    try:
        yield
    finally:
        i18n.current_language.reset(token)


@pytest.mark.usefixtures("in_arabic")
def test_gettext_substitutes_variables_in_arabic() -> None:
    text = i18n.gettext("Added %(name)s to your cart.", name="Cardamom coffee")
    assert "Cardamom coffee" in text
    assert "%(" not in text
    assert text != "Added Cardamom coffee to your cart."
    assert "سلت" in text


@pytest.mark.usefixtures("in_arabic")
def test_ngettext_picks_arabic_plural_forms() -> None:
    texts = {n: i18n.ngettext("%(num)s item", "%(num)s items", n) for n in (1, 2, 5, 11, 100)}
    for n, text in texts.items():
        assert str(n) in text and "%(" not in text and "item" not in text, (n, text)
    assert len({text.replace(str(n), "") for n, text in texts.items()}) >= 3, texts
