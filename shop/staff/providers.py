"""Staff provider settings (owner only): each provider's capabilities and whether its credentials
are configured, shown by name and state only (never a value), and the choice of the active one."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from litestar import Controller, Request, Response, get, post
from litestar.response import Template

from shop.db import write_transaction
from shop.i18n import gettext as _
from shop.payments.choice import ProviderNotReady, active_provider_slug, choose_provider, readiness
from shop.payments.providers.base import Capabilities
from shop.payments.registry import ADAPTERS, provider_for
from shop.payments.tables import ShopSetting
from shop.settings import SANDBOX_CREDENTIALS, SANDBOX_URLS, Settings
from shop.staff.audit import audit
from shop.staff.auth import Staff
from shop.staff.guards import current_staff, roles
from shop.staff.pages import staff_template
from shop.web.pages import app_settings, flash, is_htmx, see_other

log = logging.getLogger("shop.staff")
OWNER_ONLY = roles()
SETTING_STATES = ("set", "missing", "sandbox", "unset")


@dataclass(frozen=True, slots=True)
class ProviderView:
    """What the page shows of one provider. `settings` holds (SHOP_ name, state) pairs only."""

    slug: str
    available: bool  # its adapter module imports (others may still be writing it)
    capabilities: Capabilities | None
    settings: tuple[tuple[str, str], ...]
    problems: tuple[str, ...]  # names that keep it from being made active in this mode
    active: bool

    @property
    def ready(self) -> bool:
        return self.available and not self.problems


def _setting_states(slug: str, settings: Settings, client: httpx.AsyncClient) -> tuple[
        Capabilities, tuple[tuple[str, str], ...], tuple[str, ...]]:
    provider = provider_for(slug, settings, client)
    state = readiness(slug, settings)
    prefix = provider.settings_prefix()
    known = [f"SHOP_{name}" for name in (*SANDBOX_URLS, *SANDBOX_CREDENTIALS) if name.startswith(prefix)]
    configured = [name for name in settings.provider_settings if name.startswith(f"SHOP_{prefix}")]
    names = sorted({*state.missing, *state.sandbox_values, *known, *configured})
    rows = []
    for name in names:
        bare = name.removeprefix("SHOP_")
        if name in state.missing:
            rows.append((name, "missing"))
        elif name in state.sandbox_values or (settings.sandbox and bare in SANDBOX_URLS
                                              and not settings.provider_settings.get(name, "").strip()):
            rows.append((name, "sandbox"))  # a URL left unset points at the built-in sandbox
        elif settings.provider_value(bare):
            rows.append((name, "set"))
        else:
            rows.append((name, "unset"))
    problems = [*state.missing, *(state.sandbox_values if settings.production else [])]
    return provider.capabilities, tuple(rows), tuple(problems)


async def provider_overview(settings: Settings, client: httpx.AsyncClient) -> list[ProviderView]:
    """Every registered provider, in registry order; one whose adapter cannot load is listed as
    unavailable instead of breaking the page."""
    active = await active_provider_slug(settings)
    views = []
    for slug in list(ADAPTERS):
        try:
            capabilities, states, problems = _setting_states(slug, settings, client)
        except Exception:  # an adapter module still being written, or broken: say so, keep the page
            log.warning("provider %s cannot be loaded", slug, exc_info=True)
            views.append(ProviderView(slug, False, None, (), (), slug == active))
            continue
        views.append(ProviderView(slug, True, capabilities, states, problems, slug == active))
    return views


def refusal_message(slug: str, settings: Settings) -> str:
    """Why `slug` cannot be made active, in the staff member's language."""
    if not slug:
        return _("Choose a payment provider.")
    if slug not in ADAPTERS:
        return _("There is no payment provider called “%(provider)s”.", provider=slug[:40])
    try:
        state = readiness(slug, settings)
    except Exception:
        return _("The %(provider)s adapter is not available in this version of the shop.", provider=slug)
    names = [*state.missing, *(state.sandbox_values if settings.production else [])]
    return _("%(provider)s cannot be made active until these settings are configured: %(names)s.",
             provider=slug, names=", ".join(names) or "-")


async def switch_provider(staff: Staff | None, slug: str, settings: Settings) -> tuple[str, str]:
    """Make `slug` active for new payments, audited in the same transaction. Returns (before, after).

    Raises ProviderNotReady (unknown or not configured), with nothing changed."""
    async with write_transaction(ShopSetting._meta.db):
        before = await active_provider_slug(settings)
        try:
            await choose_provider(slug, settings, staff.email if staff else "")
        except (ImportError, AttributeError) as exc:  # an adapter that cannot load cannot take payments
            raise ProviderNotReady(f"{slug} cannot be loaded") from exc
        await audit(staff, "provider.activate", "provider", slug, before={"provider": before}, after={"provider": slug})
    return before, slug


class ProvidersController(Controller):
    path = "/staff/providers"

    @get("/", name="staff-providers", opt=OWNER_ONLY)
    async def providers(self, request: Request) -> Template:
        return await self._page(request)

    @post("/active", name="staff-providers-active", opt=OWNER_ONLY, status_code=303)
    async def choose(self, request: Request) -> Response:
        form = await request.form()
        raw = form.get("provider")
        slug = raw.strip()[:40] if isinstance(raw, str) else ""
        settings = app_settings(request)
        try:
            _before, after = await switch_provider(current_staff(request), slug, settings)
        except ProviderNotReady:
            return await self._page(request, error=refusal_message(slug, settings), status_code=422)
        message = _("New payments now go through %(provider)s. Payments already started keep their provider.",
                    provider=after)
        if not is_htmx(request):
            flash(request, message, "success")
            return see_other("/staff/providers")
        return await self._page(request, message=message)

    async def _page(self, request: Request, message: str = "", error: str = "", status_code: int = 200) -> Template:
        settings = app_settings(request)
        views = await provider_overview(settings, request.app.state["http"])
        return staff_template(request, "staff/providers.html", status_code=status_code, providers=views,
                              message=message, error=error, production=settings.production)
