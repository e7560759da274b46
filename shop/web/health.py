"""`GET /healthz`: liveness plus a real database round trip, for load balancers and Docker."""
from __future__ import annotations

from litestar import get
from litestar.response import Response

from shop.catalog.tables import Product
from shop.db import database_ok


@get("/healthz", name="healthz", cache_control=None)
async def healthz() -> Response[dict[str, str]]:
    ok = await database_ok(Product._meta.db)
    body = {"status": "ok" if ok else "error", "database": "ok" if ok else "unavailable"}
    return Response(body, status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})
