"""The request class of the app: Litestar's, with form values no handler could store refused."""
from __future__ import annotations

from litestar import Request
from litestar.datastructures import FormMultiDict


class ShopRequest(Request):
    async def form(self) -> FormMultiDict:
        """Form data without NUL bytes: no field has a use for one, and PostgreSQL text cannot
        hold one (a NUL reaching a query fails it). Dropped here once, for every handler and
        the CSRF check alike."""
        form = await super().form()
        if not any("\x00" in key or (isinstance(value, str) and "\x00" in value) for key, value in form.multi_items()):
            return form
        return FormMultiDict([(key.replace("\x00", ""), value.replace("\x00", "") if isinstance(value, str) else value)
                              for key, value in form.multi_items()])
