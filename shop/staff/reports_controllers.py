"""Staff reports (dashboard, CSV exports) for owners and finance; the audit log for owners."""
from __future__ import annotations

from litestar import Controller, Request, Response, get
from litestar.response import Stream, Template

from shop import i18n
from shop.staff import reports
from shop.staff.auth import Role
from shop.staff.guards import roles
from shop.staff.pages import staff_template
from shop.web.errors import UserError

CSV_TYPE = "text/csv"  # Litestar adds "; charset=utf-8"


def bad_request(error: reports.ReportError) -> UserError:
    return UserError(detail=str(error), status_code=400)


def attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


class ReportsController(Controller):
    path = "/staff/reports"

    @get("/", name="staff-reports", opt=roles(Role.FINANCE))
    async def dashboard(self, request: Request) -> Template:
        rtl = i18n.text_direction(i18n.current_language.get()) == "rtl"
        board = await reports.dashboard(rtl=rtl)
        return staff_template(request, "staff/reports/dashboard.html", board=board,
                              status_label=reports.order_status_label, max_export_days=reports.MAX_EXPORT_DAYS)

    @get("/orders.csv", name="staff-orders-csv", opt=roles(Role.FINANCE))
    async def orders_csv(self, request: Request) -> Stream:
        try:
            first, last = reports.export_range(request.query_params.get("from"), request.query_params.get("to"))
        except reports.ReportError as error:
            raise bad_request(error) from None
        return Stream(reports.orders_csv(first, last), media_type=CSV_TYPE,
                      headers=attachment(f"orders-{first.isoformat()}-to-{last.isoformat()}.csv"))

    @get("/reconciliation.csv", name="staff-reconciliation-csv", opt=roles(Role.FINANCE))
    async def reconciliation_csv(self, request: Request) -> Response:
        try:
            day = reports.reconciliation_day(request.query_params.get("date"))
            rows = await reports.reconciliation(day)
        except reports.ReportError as error:
            raise bad_request(error) from None
        return Response(reports.reconciliation_csv(rows), media_type=CSV_TYPE,
                        headers=attachment(f"reconciliation-{day.isoformat()}.csv"))


class AuditController(Controller):
    path = "/staff/audit"

    @get("/", name="staff-audit", opt=roles())  # owners only
    async def audit_log(self, request: Request) -> Template:
        params = request.query_params
        action = (params.get("action") or "")[:60]
        staff_email = (params.get("staff") or "")[:254]
        try:
            page = reports.parse_page(params.get("page"))
        except reports.ReportError as error:
            raise bad_request(error) from None
        result = await reports.audit_page(action, staff_email, page)
        return staff_template(request, "staff/audit.html", "staff/_audit.html", result=result,
                              actions=await reports.audit_actions(), action=action, staff_email=staff_email)

