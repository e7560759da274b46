"""The README's provider table is the one the code prints (`shop providers`)."""
import re

from shop.cli import providers_table
from tests.support import ROOT


def test_readme_provider_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- providers-table -->\n(.*?)\n<!-- /providers-table -->", readme, re.S)
    assert table, "README has the provider table markers"
    assert table.group(1).strip() == providers_table().strip(), "run `shop providers` and paste its output"
