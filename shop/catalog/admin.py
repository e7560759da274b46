"""Catalogue administration for staff: validated product and category edits, relative stock
adjustments that never cut into reservations, and product images checked by their bytes.

Every change writes its audit row in the same transaction as the change itself."""
from __future__ import annotations

import asyncio
import re
import secrets
import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from shop.catalog.images import MEDIA_URL, image_url  # noqa: F401 (re-exported for staff pages)
from shop.catalog.search import product_search_text, search_terms
from shop.catalog.tables import Category, Product
from shop.db import unique_or, write_transaction
from shop.i18n import gettext as _
from shop.money import fils_to_str, parse_kwd
from shop.staff.audit import audit
from shop.staff.auth import Staff, utcnow
from shop.vendors.tables import Vendor

ADMIN_PAGE_SIZE = 25
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
PRODUCT_SLUG_MAX, CATEGORY_SLUG_MAX = 120, 80
PRODUCT_NAME_MAX, CATEGORY_NAME_MAX = 200, 120
DESCRIPTION_MAX = 5000
REASON_MAX = 500
# A price above this is a typo (an extra zero or two), not a product of this shop.
MAX_PRICE_FILS = 100_000 * 1000
# Bounds on one adjustment and on stock on hand, far inside the 32-bit stock column.
MAX_STOCK_DELTA = 100_000
MAX_STOCK = 1_000_000
IMAGE_MAX_BYTES = 2 * 1024 * 1024
# Uploaded images are URL paths under the media mount; seeded ones stay relative to /static/.
IMAGE_FOLDER = "products"
_UPLOADED_IMAGE = re.compile(r"^/media/products/[a-z]{32}\.(?:png|jpg|webp)$")
# Letters only: a long run of digits in a name would be masked as card-like in the audit log.
_NAME_LETTERS = string.ascii_lowercase

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹٫", "01234567890123456789.")
_WHOLE = re.compile(r"^[+-]?\d{1,9}$")
_DECIMALS = re.compile(r"^\d+\.(\d+)$")
_GROUPED = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d*)?$")


class CatalogueError(ValueError):
    """A catalogue change refused as asked; `errors` maps form fields to messages for staff."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = dict(errors)


class NotFound(LookupError):
    """No product or category with that id."""


class StockRefused(CatalogueError):
    """The adjustment would leave less stock than orders awaiting payment have reserved."""


class ImageRejected(CatalogueError):
    """Not a PNG, JPEG or WebP file (by its bytes), or larger than IMAGE_MAX_BYTES."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__({"image": message})
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class ProductInput:
    slug: str
    category: int
    name_en: str
    name_ar: str
    description_en: str
    description_ar: str
    price_fils: int
    featured: bool
    active: bool
    vendor: int | None = None  # None: the shop's own stock


@dataclass(frozen=True, slots=True)
class CategoryInput:
    slug: str
    name_en: str
    name_ar: str
    position: int
    active: bool


@dataclass(frozen=True, slots=True)
class AdminProductPage:
    products: list[dict[str, Any]]
    total: int
    page: int
    pages: int


# --- form parsing: pure functions, (input or None, field -> message, values to show again) ---

def clean(raw: object, keep_lines: bool = False) -> str:
    """Trim, drop control characters, fold runs of spaces (descriptions keep their line breaks)."""
    text = _CONTROL.sub("", raw if isinstance(raw, str) else "")
    if keep_lines:
        return "\n".join(" ".join(line.split()) for line in text.strip().splitlines()).strip()
    return " ".join(text.split())


def _flag(raw: object) -> bool:
    return isinstance(raw, str) and raw.strip().lower() in {"1", "on", "true", "yes"}


def parse_price(text: str) -> tuple[int | None, str]:
    """KWD with at most 3 decimals -> (fils, "") or (None, message). Arabic digits are accepted."""
    text = text.translate(_DIGITS).strip()
    if _GROUPED.match(text):  # 1,250.500: commas only as thousands separators, never "1,5"
        text = text.replace(",", "")
    if not text:
        return None, _("Enter a price in KWD.")
    if text.startswith("-"):
        return None, _("A price cannot be negative.")
    decimals = _DECIMALS.match(text)
    if decimals and len(decimals.group(1)) > 3:
        return None, _("A price has at most 3 decimals (fils).")
    try:
        fils = parse_kwd(text)
    except ValueError:
        return None, _("Enter a price such as 12.500.")
    if fils <= 0:
        return None, _("A price must be more than zero.")
    if fils > MAX_PRICE_FILS:
        return None, _("A price above KWD %(max)s is not accepted.", max=fils_to_str(MAX_PRICE_FILS))
    return fils, ""


def parse_whole(text: str) -> int | None:
    """A whole number, signed or not, Arabic digits accepted; None if it is not one."""
    text = text.translate(_DIGITS).replace(" ", "")
    return int(text) if _WHOLE.match(text) else None


def _check_slug(slug: str, limit: int) -> str:
    if not slug:
        return _("Enter a slug.")
    if len(slug) > limit or not SLUG.match(slug):
        return _("Use lowercase English letters, digits and single hyphens (at most %(max)s characters).",
                 max=limit)
    return ""


def _check_names(values: dict[str, str], limit: int, errors: dict[str, str]) -> None:
    for field in ("name_en", "name_ar"):
        if not values[field]:
            errors[field] = _("Enter the name in English.") if field == "name_en" else _("Enter the name in Arabic.")
        elif len(values[field]) > limit:
            errors[field] = _("At most %(max)s characters.", max=limit)


def validate_product(form: Mapping[str, object]) -> tuple[ProductInput | None, dict[str, str], dict[str, Any]]:
    """Check a product form. Names in both languages are required; the price is KWD text."""
    values: dict[str, Any] = {
        "slug": clean(form.get("slug")).lower(),
        "category": clean(form.get("category")),
        "name_en": clean(form.get("name_en")),
        "name_ar": clean(form.get("name_ar")),
        "description_en": clean(form.get("description_en"), keep_lines=True),
        "description_ar": clean(form.get("description_ar"), keep_lines=True),
        "price": clean(form.get("price")),
        "featured": _flag(form.get("featured")),
        "active": _flag(form.get("active")),
        "vendor": clean(form.get("vendor")),
    }
    errors: dict[str, str] = {}
    if message := _check_slug(values["slug"], PRODUCT_SLUG_MAX):
        errors["slug"] = message
    _check_names(values, PRODUCT_NAME_MAX, errors)
    for field in ("description_en", "description_ar"):
        if len(values[field]) > DESCRIPTION_MAX:
            errors[field] = _("At most %(max)s characters.", max=DESCRIPTION_MAX)
    category = parse_whole(values["category"])
    if category is None or category <= 0:
        errors["category"] = _("Choose a category.")
    price, message = parse_price(values["price"])
    if message:
        errors["price"] = message
    vendor = parse_whole(values["vendor"]) if values["vendor"] else None
    if values["vendor"] and (vendor is None or vendor <= 0):
        errors["vendor"] = _("Choose a vendor from the list, or none for the shop's own stock.")
    if errors:
        return None, errors, values
    assert category is not None and price is not None
    data = ProductInput(values["slug"], category, values["name_en"], values["name_ar"], values["description_en"],
                        values["description_ar"], price, values["featured"], values["active"], vendor)
    return data, {}, values


def validate_initial_stock(raw: object) -> tuple[int | None, str]:
    """Stock on hand for a new product: a whole number from 0 (blank means 0)."""
    text = clean(raw)
    if not text:
        return 0, ""
    stock = parse_whole(text)
    if stock is None or stock < 0 or stock > MAX_STOCK:
        return None, _("Enter a whole number from 0 to %(max)s.", max=MAX_STOCK)
    return stock, ""


def validate_category(form: Mapping[str, object]) -> tuple[CategoryInput | None, dict[str, str], dict[str, Any]]:
    values: dict[str, Any] = {
        "slug": clean(form.get("slug")).lower(),
        "name_en": clean(form.get("name_en")),
        "name_ar": clean(form.get("name_ar")),
        "position": clean(form.get("position")) or "0",
        "active": _flag(form.get("active")),
    }
    errors: dict[str, str] = {}
    if message := _check_slug(values["slug"], CATEGORY_SLUG_MAX):
        errors["slug"] = message
    _check_names(values, CATEGORY_NAME_MAX, errors)
    position = parse_whole(values["position"])
    if position is None or not 0 <= position <= 10_000:
        errors["position"] = _("Enter a whole number from 0 to %(max)s.", max=10_000)
    if errors:
        return None, errors, values
    assert position is not None
    return CategoryInput(values["slug"], values["name_en"], values["name_ar"], position, values["active"]), {}, values


def validate_adjustment(form: Mapping[str, object]) -> tuple[tuple[int, str] | None, dict[str, str], dict[str, str]]:
    """A relative change (+5, -3) and its reason."""
    values = {"delta": clean(form.get("delta")), "reason": clean(form.get("reason"), keep_lines=True)}
    errors: dict[str, str] = {}
    delta = parse_whole(values["delta"])
    if delta is None or delta == 0 or abs(delta) > MAX_STOCK_DELTA:
        errors["delta"] = _("Enter a change such as +5 or -3 (at most %(max)s either way).", max=MAX_STOCK_DELTA)
    if not values["reason"]:
        errors["reason"] = _("Say why the stock changes.")
    elif len(values["reason"]) > REASON_MAX:
        errors["reason"] = _("At most %(max)s characters.", max=REASON_MAX)
    if errors:
        return None, errors, values
    assert delta is not None
    return (delta, values["reason"]), {}, values


# --- reading ---

def _with_sellable(row: dict[str, Any]) -> dict[str, Any]:
    row["sellable"] = max(0, row["stock"] - row["reserved"])
    return row


async def all_categories() -> list[dict[str, Any]]:
    """Every category, inactive ones too, in shop order."""
    return await Category.select().order_by(Category.position).order_by(Category.id)


async def list_products(query: str = "", category_id: int | None = None, status: str = "", page: int = 1,
                        page_size: int = ADMIN_PAGE_SIZE) -> AdminProductPage:
    """Products for staff: every word of `query` in a name or the slug; `status` active/inactive."""
    condition = Product.id > 0
    if category_id is not None:
        condition &= Product.category == category_id
    if status in ("active", "inactive"):
        condition &= Product.active.eq(status == "active")
    for term in search_terms(query):
        condition &= Product.search_text.like(f"%{term}%") | Product.slug.like(f"%{term}%")
    total = await Product.count().where(condition)
    pages = max(1, -(-total // page_size))
    page = min(max(page, 1), pages)
    rows = await Product.select(
        Product.id, Product.slug, Product.name_en, Product.name_ar, Product.price_fils, Product.stock,
        Product.reserved, Product.active, Product.featured, Product.image,
        Product.category.name_en.as_alias("category_name_en"), Product.category.name_ar.as_alias("category_name_ar"),
    ).where(condition).order_by(Product.id, ascending=False).limit(page_size).offset((page - 1) * page_size)
    return AdminProductPage([_with_sellable(r) for r in rows], total, page, pages)


async def get_product(product_id: int) -> dict[str, Any]:
    """Raises NotFound."""
    row = await Product.select().where(Product.id == product_id).first()
    if row is None:
        raise NotFound(product_id)
    return _with_sellable(row)


async def get_category(category_id: int) -> dict[str, Any]:
    """Raises NotFound."""
    row = await Category.select().where(Category.id == category_id).first()
    if row is None:
        raise NotFound(category_id)
    return row


def product_form_values(product: Mapping[str, Any]) -> dict[str, Any]:
    """A stored product as the edit form shows it (price as KWD text)."""
    return {
        "slug": product["slug"], "category": str(product["category"]), "name_en": product["name_en"],
        "name_ar": product["name_ar"], "description_en": product["description_en"],
        "description_ar": product["description_ar"], "price": fils_to_str(product["price_fils"]),
        "featured": product["featured"], "active": product["active"], "vendor": str(product["vendor"] or ""),
    }


# --- changing ---

_PRODUCT_COLUMNS = ("slug", "category", "name_en", "name_ar", "description_en", "description_ar", "price_fils",
                    "featured", "active", "vendor")


def _product_values(data: ProductInput) -> dict[str, Any]:
    return {**asdict(data), "search_text": product_search_text(data.name_en, data.name_ar)}


async def _require_category(category_id: int) -> None:
    if not await Category.exists().where(Category.id == category_id):
        raise CatalogueError({"category": _("Choose a category.")})


async def _require_vendor(vendor_id: int | None, current: int | None = None) -> None:
    """None (own stock), an active vendor, or the vendor the product already has (kept as it is)."""
    if vendor_id is None or vendor_id == current:
        return
    if not await Vendor.exists().where((Vendor.id == vendor_id) & (Vendor.active == True)):  # noqa: E712
        raise CatalogueError({"vendor": _("Choose an active vendor, or none for the shop's own stock.")})


async def vendor_choices(current: int | None = None) -> list[dict[str, Any]]:
    """The product form's vendor picker: active vendors, and the product's own even if inactive."""
    condition = Vendor.active == True  # noqa: E712
    if current is not None:
        condition |= Vendor.id == current
    return await Vendor.select(Vendor.id, Vendor.name, Vendor.active).where(condition).order_by(Vendor.name)


async def _require_free_slug(table: type[Product] | type[Category], slug: str, own_id: int | None) -> None:
    condition = table.slug == slug
    if own_id is not None:
        condition &= table.id != own_id
    if await table.exists().where(condition):
        raise CatalogueError({"slug": _("Another item already uses this slug.")})


def _slug_taken() -> CatalogueError:
    """A concurrent create or rename won the unique slug between our check and our write."""
    return CatalogueError({"slug": _("Another item already uses this slug.")})


async def create_product(staff: Staff | None, data: ProductInput, stock: int = 0) -> dict[str, Any]:
    """Add a product with `stock` on hand. Raises CatalogueError (slug taken, unknown category)."""
    if not 0 <= stock <= MAX_STOCK:
        raise CatalogueError({"stock": _("Enter a whole number from 0 to %(max)s.", max=MAX_STOCK)})
    await _require_category(data.category)
    await _require_vendor(data.vendor)
    await _require_free_slug(Product, data.slug, None)
    values = _product_values(data)
    async with unique_or(_slug_taken), write_transaction(Product._meta.db):
        rows = await Product.insert(Product(**values, stock=stock, reserved=0)).returning(*Product.all_columns())
        product = rows[0]
        await audit(staff, "product.create", "product", product["id"],
                    after={**{k: product[k] for k in _PRODUCT_COLUMNS}, "stock": stock})
    return _with_sellable(product)


def changed_values(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(old, new) values of the fields `after` changes: what an audit entry records."""
    changed = [k for k in after if before.get(k) != after[k]]
    return {k: before.get(k) for k in changed}, {k: after[k] for k in changed}


async def update_product(staff: Staff | None, product_id: int, data: ProductInput) -> dict[str, Any]:
    """Change a product's details (never its stock: see adjust_stock). Deactivate, never delete.

    Raises NotFound, CatalogueError. Saving unchanged values changes nothing and audits nothing."""
    await _require_category(data.category)
    existing = await Product.select(Product.vendor).where(Product.id == product_id).first()
    await _require_vendor(data.vendor, existing["vendor"] if existing else None)
    await _require_free_slug(Product, data.slug, product_id)
    values = _product_values(data)
    async with unique_or(_slug_taken), write_transaction(Product._meta.db):
        current = await get_product(product_id)
        before, after = changed_values(current, values)
        if not after:
            return current
        await Product.update({**values, "updated_at": utcnow()}).where(Product.id == product_id)
        before.pop("search_text", None)
        after.pop("search_text", None)
        await audit(staff, "product.update", "product", product_id, before=before, after=after)
    return await get_product(product_id)


async def adjust_stock(staff: Staff | None, product_id: int, delta: int, reason: str) -> dict[str, Any]:
    """Add `delta` (negative to remove) to stock on hand, with a reason. Not idempotent.

    The database applies it only while stock + delta stays at or above what is reserved, so an
    adjustment racing a checkout can never take units an unpaid order holds.
    Raises NotFound, StockRefused (nothing changed)."""
    if delta == 0 or abs(delta) > MAX_STOCK_DELTA:
        raise CatalogueError({"delta": _("Enter a change such as +5 or -3 (at most %(max)s either way).",
                                         max=MAX_STOCK_DELTA)})
    async with write_transaction(Product._meta.db):
        rows = await Product.raw(
            "UPDATE product SET stock = stock + {}, updated_at = {} "
            "WHERE id = {} AND stock + {} >= reserved AND stock + {} <= {} RETURNING id, stock, reserved",
            delta, utcnow(), product_id, delta, delta, MAX_STOCK,
        )
        if not rows:
            current = await get_product(product_id)  # raises NotFound
            if current["stock"] + delta > MAX_STOCK:
                message = _("Stock on hand cannot exceed %(max)s.", max=MAX_STOCK)
            else:
                message = _("Refused: %(stock)s on hand, %(reserved)s reserved by orders awaiting payment. "
                            "At most %(most)s can be removed now.", stock=current["stock"],
                            reserved=current["reserved"], most=max(0, current["stock"] - current["reserved"]))
            raise StockRefused({"delta": message})
        row = rows[0]
        await audit(staff, "product.stock", "product", product_id,
                    before={"stock": row["stock"] - delta, "reserved": row["reserved"]},
                    after={"stock": row["stock"], "reserved": row["reserved"], "delta": delta}, reason=reason)
    return await get_product(product_id)


def sniff_image(data: bytes) -> str | None:
    """The file's type by its magic bytes: "png", "jpg", "webp", or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".part")
    temporary.write_bytes(data)
    temporary.replace(path)  # readers never see half a file


def _remove_upload(media_root: Path, image: str) -> None:
    if _UPLOADED_IMAGE.match(image or ""):
        (media_root / image.removeprefix(MEDIA_URL)).unlink(missing_ok=True)


async def set_product_image(staff: Staff | None, product_id: int, data: bytes, media_root: Path) -> dict[str, Any]:
    """Store `data` as the product's image under a new random name; the old image stays in use
    until the new one is saved, and its file is removed only afterwards.

    Only PNG, JPEG and WebP, told by their bytes (never SVG: it can carry scripts).
    Raises ImageRejected, NotFound (nothing changed)."""
    if len(data) > IMAGE_MAX_BYTES:
        raise ImageRejected(_("The image is larger than %(max)s MB.", max=IMAGE_MAX_BYTES // (1024 * 1024)),
                            too_large=True)
    kind = sniff_image(data)
    if kind is None:
        raise ImageRejected(_("Upload a PNG, JPEG or WebP image."))
    await get_product(product_id)
    random_name = "".join(secrets.choice(_NAME_LETTERS) for _ in range(32))  # 150 bits
    name = f"{IMAGE_FOLDER}/{random_name}.{kind}"
    url = MEDIA_URL + name
    await asyncio.to_thread(_write_file, media_root / name, data)
    try:
        async with write_transaction(Product._meta.db):
            current = await get_product(product_id)
            await Product.update({Product.image: url, Product.updated_at: utcnow()}).where(Product.id == product_id)
            await audit(staff, "product.image", "product", product_id,
                        before={"image": current["image"]}, after={"image": url, "bytes": len(data)})
    except BaseException:
        await asyncio.to_thread(_remove_upload, media_root, url)
        raise
    await asyncio.to_thread(_remove_upload, media_root, current["image"])
    return await get_product(product_id)


async def create_category(staff: Staff | None, data: CategoryInput) -> dict[str, Any]:
    """Raises CatalogueError (slug taken)."""
    await _require_free_slug(Category, data.slug, None)
    async with unique_or(_slug_taken), write_transaction(Category._meta.db):
        rows = await Category.insert(Category(**asdict(data))).returning(*Category.all_columns())
        await audit(staff, "category.create", "category", rows[0]["id"], after=asdict(data))
    return rows[0]


async def update_category(staff: Staff | None, category_id: int, data: CategoryInput) -> dict[str, Any]:
    """Rename, reorder or (de)activate a category: an inactive one hides its products from customers.

    Raises NotFound, CatalogueError."""
    await _require_free_slug(Category, data.slug, category_id)
    async with unique_or(_slug_taken), write_transaction(Category._meta.db):
        current = await get_category(category_id)
        before, after = changed_values(current, asdict(data))
        if after:
            await Category.update(asdict(data)).where(Category.id == category_id)
            await audit(staff, "category.update", "category", category_id, before=before, after=after)
    return await get_category(category_id)
