from shop.catalog.search import normalise, product_search_text, search_terms


def test_arabic_letter_forms_and_marks_fold_together() -> None:
    assert normalise("قَهْوَة") == normalise("قهوه")
    assert normalise("أعواد") == normalise("اعواد")
    assert normalise("هدية ٢٥٠") == "هديه 250"


def test_english_is_case_insensitive_and_wildcards_are_dropped() -> None:
    assert search_terms("  Coffee   100% ") == ["coffee", "100"]
    assert search_terms("a_b\\c") == ["a", "b", "c"]
    assert search_terms("") == []


def test_terms_are_bounded() -> None:
    assert len(search_terms(" ".join(f"w{i}" for i in range(50)))) == 6
    assert search_terms("x" * 10_000) == ["x" * 100]


def test_product_search_text_holds_both_languages() -> None:
    text = product_search_text("Saffron Arabic Coffee", "قهوة عربية")
    assert "saffron" in text and normalise("قهوة") in text
