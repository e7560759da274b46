"""Where the project's non-Python folders live (templates, static, migrations, locale)."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# In a checkout (or an editable install) the folders sit beside the package; an image that
# installs the package elsewhere runs from the project folder instead.
PROJECT_DIR = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "templates").is_dir() else Path.cwd()
TEMPLATES_DIR = PROJECT_DIR / "templates"
STATIC_DIR = PROJECT_DIR / "static"
MIGRATIONS_DIR = PROJECT_DIR / "migrations"
LOCALE_DIR = PACKAGE_DIR / "locale"
