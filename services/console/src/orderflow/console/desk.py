"""The order desk: orders taken by phone, e-mail, fax or paper typed in (``/desk``), or pasted
and imported from a sheet (``/desk/import``), by operators with the right ``enter``.

Intake decides every order: the desk posts it to intake's channel order API as channel ``desk``
with the desk's key (``ORDERFLOW_CONSOLE_DESK_KEY`` or ``_FILE``) and the operator as
``X-OrderFlow-Author``, and shows intake's answer: its totals from a dry run
(``?dry_run=true``) while the order is typed, its reasons beside their fields on 422, the
order's page on 202. The customer's credit comes from review, a SKU's stock per warehouse from
inventory, both with the console's signed service credential; customers (their contact, terms
and delivery address, which fills the form's) and products from the console's master data.
Submissions are audited (``desk_submit``, ``desk_import``); an accepted order or revision shows
on the order's timeline as entered by its operator: intake's ``order.received`` /
``order.revision-received`` name it (``author``) for channel ``desk``."""

import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import structlog
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile  # what request.form() gives for a file

from orderflow.connector.limits import FileLimits, FileRefused
from orderflow.connector.spreadsheet import group_order_rows, read_order_sheet
from orderflow.console import desk_domain
from orderflow.console.api import Console, requirement
from orderflow.console.auth import Operator
from orderflow.console.desk_repository import CUSTOMERS, PRODUCTS, DeskRepository, Lookup
from orderflow.console.repository import ConsoleRepository

log = structlog.get_logger(__name__)
AUTHOR_HEADER = "X-OrderFlow-Author"
LOOKUP_LIMIT = 20
# what one import may bring (a sheet of more orders is imported in parts)
MAX_IMPORT_ORDERS = 200
MAX_ORDER_BYTES = 256 * 1024


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as JSON gives them (decimals as strings)."""
    return {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in row.items()}


class Intake:
    """The desk's calls to intake's channel order API (the desk key, the author)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def unavailable(self) -> JSONResponse | None:
        if self.console.settings.desk_secret() is None:
            return JSONResponse({"status": 503, "message": "the desk cannot post orders: "
                                 "ORDERFLOW_CONSOLE_DESK_KEY (or _FILE) is not configured"},
                                status_code=503)
        if not self.console.service_url("intake"):
            return JSONResponse({"status": 503, "message": "intake's URL is not configured"},
                                status_code=503)
        return None

    async def post(self, order: dict[str, Any], op: Operator, *,
                   dry_run: bool) -> tuple[int, dict[str, Any]]:
        """Intake's status and answer for ``order`` (502 when intake cannot be reached)."""
        key = self.console.settings.desk_secret()
        assert key is not None
        try:
            async with httpx.AsyncClient(base_url=self.console.service_url("intake"),
                                         transport=self.console.transport,
                                         timeout=self.console.settings.review_timeout_s) as client:
                r = await client.post(
                    f"/api/v1/channels/{desk_domain.DESK_CHANNEL}/orders",
                    params={"dry_run": "true"} if dry_run else None, json=order,
                    headers={"Authorization": f"Bearer {key}", AUTHOR_HEADER: op.name})
        except httpx.HTTPError as exc:
            return 502, {"status": 502,
                         "message": f"intake is unreachable ({type(exc).__name__})"}
        try:
            answer = r.json()
        except ValueError:
            answer = {"message": r.text[:500]}
        return r.status_code, answer if isinstance(answer, dict) else {"message": str(answer)}


async def _service_get(console: Console, service: str, path: str,
                       op: Operator) -> dict[str, Any]:
    """A read from another service with the console's credential: its answer with its status,
    or why there is none."""
    if console.service_key is None or not console.service_url(service):
        return {"status": 503, "message": f"the console cannot reach {service}"}
    try:
        async with console.client(service, op) as client:
            r = await client.get(path)
    except httpx.HTTPError as exc:
        return {"status": 502, "message": f"{service} is unreachable ({type(exc).__name__})"}
    try:
        answer = r.json()
    except ValueError:
        answer = {"message": r.text[:200]}
    return {"status": r.status_code, **(answer if isinstance(answer, dict) else {})}


def _body_order(body: Any) -> dict[str, Any]:
    order = body.get("order") if isinstance(body, dict) else None
    if not isinstance(order, dict):
        raise HTTPException(422, 'the body is {"order": {...}}')
    return order


def desk_api_router(console: Console) -> APIRouter:
    router = APIRouter(prefix="/api/desk", tags=["order desk"])
    enter = Depends(requirement(console, "enter"))
    intake = Intake(console)

    def lookup(name: str, summary: str, rows_of: Lookup) -> None:
        """``GET /api/desk/<name>?q=``: the master data's rows holding q, as ``{name: [...]}``."""

        @router.get(f"/{name}", name=name, summary=summary)
        async def search(_op: Annotated[Operator, enter],
                         q: Annotated[str, Query(min_length=1, max_length=100)],
                         ) -> dict[str, Any]:
            async with console.sessions() as session:
                rows = await DeskRepository(session).find(rows_of, q.strip(), LOOKUP_LIMIT)
            return {name: [_plain(r) for r in rows]}

    lookup("customers", "Customers whose id, name or phone holds q, with their terms and "
           "delivery address", CUSTOMERS)
    lookup("products", "Products whose SKU, name or spec holds q, with prices", PRODUCTS)

    @router.get("/customers/{customer_id}",
                summary="A customer's master data, latest destination and credit (from review)")
    async def customer(customer_id: str, op: Annotated[Operator, enter]) -> Response:
        async with console.sessions() as session:
            repo = DeskRepository(session)
            row = await repo.customer(customer_id)
            destination = await repo.last_destination(customer_id) if row else None
        if row is None:
            return JSONResponse({"message": f"no customer {customer_id}"}, status_code=404)
        credit = await _service_get(console, "review",
                                    f"/api/credit-accounts/{quote(customer_id, safe='')}", op)
        return JSONResponse({"customer": _plain(row), "destination": destination,
                             "credit": credit})

    @router.get("/stock/{sku}", summary="A SKU's stock per warehouse (from inventory)")
    async def stock(sku: str, op: Annotated[Operator, enter]) -> dict[str, Any]:
        return await _service_get(console, "inventory",
                                  f"/inventory/stock/{quote(sku, safe='')}", op)

    @router.get("/prefill/{order_id}",
                summary="A stored order as the form for a new revision of it")
    async def prefill(order_id: str, _op: Annotated[Operator, enter]) -> Response:
        async with console.sessions() as session:
            entries = (await ConsoleRepository(session).entries_of([order_id]))[order_id]
            form = desk_domain.prefill(order_id, entries)
            customer_id = ((form or {}).get("order", {}).get("customer") or {}).get("id")
            master = await DeskRepository(session).customer(customer_id) if customer_id else None
        if form is None:
            return JSONResponse({"message": f"the console has no content of order {order_id}"},
                                status_code=404)
        if form["channel"] != "desk":  # the desk's revision of it would be another order
            return JSONResponse({"message": f"order {order_id} came from {form['channel']}: its "
                                            "revisions come from that channel"}, status_code=409)
        return JSONResponse({**form, "customer": _plain(master) if master else None})

    @router.post("/check", summary="Intake's dry run of a typed order: its totals or reasons")
    async def check(op: Annotated[Operator, enter],
                    body: Annotated[dict[str, Any], Body()]) -> Response:
        closed = intake.unavailable()
        if closed is not None:
            return closed
        order = desk_domain.desk_order(_body_order(body), op.name, datetime.now(UTC))
        status, answer = await intake.post(order, op, dry_run=True)
        return JSONResponse({**answer, "external_id": order["external_id"]}, status_code=status)

    @router.post("/orders", summary="Submit a typed order to intake (channel desk)")
    async def submit(op: Annotated[Operator, enter],
                     body: Annotated[dict[str, Any], Body()]) -> Response:
        closed = intake.unavailable()
        if closed is not None:
            await console.audit(op, "desk_submit", None, "not_configured")
            return closed
        order = desk_domain.desk_order(_body_order(body), op.name, datetime.now(UTC))
        status, answer = await intake.post(order, op, dry_run=False)
        outcome = "accepted" if status in (200, 202) else f"refused_{status}"
        await console.audit(op, "desk_submit", answer.get("order_id") or order["external_id"],
                            outcome, external_id=order["external_id"],
                            revision=order.get("revision", 1), intake_status=status,
                            reasons=[r.get("code") for r in answer.get("reasons") or []
                                     if isinstance(r, dict)])
        return JSONResponse({**answer, "external_id": order["external_id"]}, status_code=status)

    @router.post("/import", summary="Rows pasted or a CSV/XLSX order sheet, each order checked")
    async def import_rows(request: Request, op: Annotated[Operator, enter]) -> Response:
        closed = intake.unavailable()
        if closed is not None:
            return closed
        try:
            sheet = await _sheet_orders(request)
        except (ValueError, FileRefused) as exc:
            return JSONResponse({"message": str(exc)}, status_code=422)
        if len(sheet) > MAX_IMPORT_ORDERS:
            return JSONResponse({"message": f"{len(sheet)} orders: import at most "
                                 f"{MAX_IMPORT_ORDERS} at a time"}, status_code=422)
        checked = []
        now = datetime.now(UTC)
        for payload in (desk_domain.sheet_order(p, op.name, now) for p in sheet):
            status, answer = await intake.post(payload, op, dry_run=True)
            checked.append({"order_number": payload["order_number"],
                            "rows": [r["row"] for r in payload["rows"]], "payload": payload,
                            "status": status, "answer": answer})
        return JSONResponse({"orders": checked})

    @router.post("/import/submit", summary="Post the checked orders of an import to intake")
    async def import_submit(op: Annotated[Operator, enter],
                            body: Annotated[dict[str, Any], Body()]) -> Response:
        closed = intake.unavailable()
        if closed is not None:
            return closed
        payloads = body.get("orders")
        if not isinstance(payloads, list) or not payloads or len(payloads) > MAX_IMPORT_ORDERS \
                or not all(isinstance(p, dict) for p in payloads):
            return JSONResponse({"message": f"the body is {{\"orders\": [...]}}, 1 to "
                                 f"{MAX_IMPORT_ORDERS} orders"}, status_code=422)
        results = []
        for payload in payloads:
            status, answer = await intake.post(payload, op, dry_run=False)
            results.append({"order_number": payload.get("order_number"), "status": status,
                            "answer": answer})
        accepted = [r for r in results if r["status"] in (200, 202)]
        await console.audit(op, "desk_import", None, f"{len(accepted)}_of_{len(results)}",
                            orders=[(r["order_number"], r["status"],
                                     r["answer"].get("order_id")) for r in results])
        return JSONResponse({"results": results, "accepted": len(accepted)})

    return router


async def _sheet_orders(request: Request) -> list[dict[str, Any]]:
    """The orders of an import: the rows pasted (``{"text": ...}``, tab-separated, the header
    first) or the sheet uploaded (a form's ``file``), read by the connector's order-sheet reader."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise ValueError("choose a CSV or XLSX file")
        suffix = Path(upload.filename).suffix.lower()
        if suffix not in {".csv", ".xlsx", ".xlsm"}:
            raise ValueError("a sheet is a .csv or .xlsx file")
        limits = FileLimits()
        content = await upload.read(limits.max_bytes + 1)
        if len(content) > limits.max_bytes:
            raise ValueError(f"the file is larger than {limits.max_bytes} bytes")
        with tempfile.TemporaryDirectory(prefix="orderflow-desk-") as folder:
            path = Path(folder) / f"{Path(upload.filename).stem[:80] or 'sheet'}{suffix}"
            path.write_bytes(content)
            return read_order_sheet(path, limits)
    body = await request.json()
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError("paste the sheet's rows, its header row first")
    if len(text.encode()) > MAX_ORDER_BYTES * 8:
        raise ValueError("too much text: import the sheet as a file")
    return group_order_rows(desk_domain.pasted_rows(text), "pasted")


def desk_pages_router(console: Console) -> APIRouter:
    from orderflow.console.pages import lang_of, render

    router = APIRouter(include_in_schema=False)

    async def page(request: Request, name: str, **extra: Any) -> Response:
        op = await console.operator(request)
        if op is None or op.via != "session":
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        if not op.may("enter"):
            await console.audit(op, "enter", request.url.path, "forbidden")
            return render("desk_refused.html", lang_of(request), status_code=403,
                          here=request.url.path, page=name, operator=op, csrf=op.csrf_token)
        return render(f"{name}.html", lang_of(request), here=request.url.path, page=name,
                      operator=op, csrf=op.csrf_token, **extra)

    @router.get("/desk")
    async def desk(request: Request, from_: Annotated[str | None, Query(alias="from")] = None,
                   ) -> Response:
        return await page(request, "desk", prefill_from=from_ or "")

    @router.get("/desk/import")
    async def desk_import(request: Request) -> Response:
        return await page(request, "desk_import")

    return router


def desk_routers(console: Console) -> list[APIRouter]:
    return [desk_api_router(console), desk_pages_router(console)]
