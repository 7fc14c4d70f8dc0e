"""Personal data never reaches a log line through an exception: a traceback, an exception's
message, a database error's parameters and PostgreSQL's DETAIL are masked like every other field,
for structlog's loggers and for the stdlib's (SQLAlchemy, aiokafka), through the real logging
configuration; names, street lines and postal codes are masked by their keys wherever they are
(a mapping, JSON text, JSON inside JSON, a repr), and the traceback itself stays readable."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import asyncpg.exceptions
import pytest
import structlog
from sqlalchemy import exc as sa_exc

from orderflow.contracts.order import Address, Customer
from orderflow.runtime.logging import (
    configure_logging,
    dict_tracebacks,
    exception_text,
    get_logger,
    mask_personal_data,
    mask_text,
)

pytestmark = pytest.mark.unit

EMAIL = "zhao.xiaoming@example.com"
PHONE = "+86 138 0013 8000"
NAME = "Zhao Xiaoming"
RECIPIENT = "Qian Meili"
STREET = "88 Jianguo Road, Tower 3, Room 1201"
POSTCODE = "SW1A 2AA"
RAW_VALUES = (EMAIL, PHONE, "13800138000", "138 0013 8000", NAME, RECIPIENT, STREET, "Jianguo",
              POSTCODE, "Xiaoming", "Meili")


def order() -> dict[str, Any]:
    """An order as the canonical model writes it: personal data in the customer and the address,
    where a city and an order id may stay readable."""
    return {
        "external_id": "PO-7731", "currency": "CNY",
        "customer": {"id": "C0042", "name": NAME, "email": EMAIL, "phone": PHONE},
        "shipping_address": {"name": RECIPIENT, "phone": PHONE, "country": "CN",
                             "province": "Beijing", "city": "Beijing", "district": "Chaoyang",
                             "line1": STREET, "postal_code": POSTCODE},
        "lines": [{"sku": "TEA-002", "quantity": 2, "unit_price": "57.70"}],
    }


def assert_no_personal_data(text: str) -> None:
    leaked = [v for v in RAW_VALUES if v in text]
    assert not leaked, f"{leaked} in {text[:3000]}"


# --- exceptions as the services meet them ----------------------------------------------------

def _parse(payload: str) -> None:
    """Fails the way a handler fails: the order JSON in the message."""
    raise ValueError(f"cannot read order {payload}")


def _validate(data: dict[str, Any]) -> None:
    """Fails with the order as a dict (its repr) in the message, and a phone in free text."""
    raise KeyError(f"no warehouse for {data!r}; customer phone {data['customer']['phone']}")


def _store(named: dict[str, Any], cause: BaseException) -> None:
    """SQLAlchemy's error with named parameters, the order JSON among them."""
    raise sa_exc.IntegrityError(
        "INSERT INTO orders (id, customer_name, email, payload) "
        "VALUES (:id, :customer_name, :email, :payload)", named, cause) from cause


def _store_positional(positional: tuple[Any, ...], cause: BaseException) -> None:
    """SQLAlchemy's error as the asyncpg dialect raises it: positional parameters, and the
    driver's error with PostgreSQL's DETAIL naming the row."""
    raise sa_exc.IntegrityError("INSERT INTO customers (id, name, email, phone, address) "
                                "VALUES ($1, $2, $3, $4, $5)", positional, cause) from cause


def _postgres_error(detail: str) -> BaseException:
    err = asyncpg.exceptions.UniqueViolationError(
        'duplicate key value violates unique constraint "customers_email_key"')
    err.detail = detail
    return err


def raise_everything() -> None:
    """A chain carrying every kind of personal data: JSON in a message, a dict's repr, named and
    positional database parameters (an order JSON longer than SQLAlchemy's 300-character cut),
    and a PostgreSQL DETAIL."""
    data = order()
    payload = json.dumps(data)
    try:
        _parse(payload)
    except ValueError as first:
        try:
            _validate(data)
        except KeyError as second:
            second.__context__ = first
            try:
                _store({"id": "o-1", "customer_name": NAME, "email": EMAIL, "payload": payload},
                       second)
            except sa_exc.IntegrityError as third:
                pg = _postgres_error(f"Key (email)=({EMAIL}) already exists.")
                pg.__context__ = third
                _store_positional(("C0042", data["customer"]["name"], EMAIL, PHONE,
                                   data["shipping_address"]["line1"]), pg)


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def assert_traceback_kept(exception: str) -> None:
    """The traceback is all there: every exception of the chain by type, the frames by function,
    the SQL, and the masked forms that still tell an e-mail's domain and a phone's end."""
    assert exception.startswith("Traceback (most recent call last):")
    for what in ("ValueError: cannot read order", "KeyError:", "sqlalchemy.exc.IntegrityError",
                 "UniqueViolationError", "in _parse", "in _validate", "in _store",
                 "in _store_positional", "in raise_everything", "[SQL: INSERT INTO orders",
                 "[parameters:", "Key (email)=(***) already exists", '"external_id": "PO-7731"',
                 '"shipping_address": "***"', "'C0042', '***', 'z***@example.com', '****",
                 "z***@example.com", "***8000"):
        assert what in exception, f"{what!r} is missing from the traceback:\n{exception}"


# --- through the real configuration ----------------------------------------------------------

@pytest.mark.usefixtures("process_logging")
def test_a_structlog_exception_carrying_personal_data_is_logged_masked_with_its_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("t", fmt="json")
    log = get_logger("orderflow.test")
    try:
        raise_everything()
    except sa_exc.IntegrityError as exc:
        log.exception("order failed", order_id="o-1", order=order(),
                      customer=Customer(id="C0042", name=NAME, email=EMAIL, phone=PHONE),
                      error=exc, note=f"payload {json.dumps({'payload': json.dumps(order())})}")
    out = capsys.readouterr().out
    assert_no_personal_data(out)
    (line,) = json_lines(out)
    assert line["event"] == "order failed" and line["order_id"] == "o-1"
    assert line["order"]["customer"] == {"id": "C0042", "name": "***",
                                         "email": "z***@example.com", "phone": "***8000"}
    assert line["order"]["shipping_address"] == "***"
    assert line["order"]["lines"][0]["sku"] == "TEA-002"
    assert line["customer"]["id"] == "C0042" and line["customer"]["name"] == "***"
    assert line["error"].startswith("IntegrityError: (asyncpg.exceptions.UniqueViolationError)")
    assert_traceback_kept(line["exception"])


@pytest.mark.usefixtures("process_logging")
@pytest.mark.parametrize("logger_name", ["sqlalchemy.engine", "aiokafka"])
def test_a_stdlib_library_logging_an_exception_is_masked_with_its_traceback(
        capsys: pytest.CaptureFixture[str], logger_name: str) -> None:
    configure_logging("t", fmt="json")
    library = logging.getLogger(logger_name)
    try:
        raise_everything()
    except sa_exc.IntegrityError:
        library.error("failed with %s for recipient=%r", json.dumps(order()), RECIPIENT,
                      exc_info=True)
        library.exception("and again, as %r", order())
    out = capsys.readouterr().out
    assert_no_personal_data(out)
    first, second = json_lines(out)
    assert first["logger"] == logger_name and first["level"] == "error"
    assert first["event"].startswith('failed with {"external_id": "PO-7731"')
    assert_traceback_kept(first["exception"])
    assert_traceback_kept(second["exception"])


@pytest.mark.usefixtures("process_logging")
def test_the_console_format_masks_the_traceback_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("t", fmt="console")
    try:
        raise_everything()
    except sa_exc.IntegrityError:
        get_logger("orderflow.test").exception("order failed", order=order())
        logging.getLogger("sqlalchemy.engine").exception("db failed")
    out = capsys.readouterr().out
    assert_no_personal_data(out)
    order_failed, db_failed = out.split("[error    ] db failed")
    for text in (order_failed, db_failed):
        assert text.count("Traceback (most recent call last):") == 4  # one per chained error
        assert "in _store_positional" in text and "UniqueViolationError" in text


def test_dict_tracebacks_keep_frame_names_and_mask_messages_and_locals() -> None:
    """The structured traceback format: function names stay (a frame's ``name`` is not a
    person's), exception values are masked; local variables are not rendered by OrderFlow's
    ``dict_tracebacks``, and when another transformer renders them only their names are kept
    (a tuple of a person's details has no keys to mask it by)."""
    try:
        raise_everything()
    except sa_exc.IntegrityError:
        exc_info = sys.exc_info()
        ours = dict_tracebacks(None, "error", {"event": "x", "exc_info": exc_info})
        theirs = structlog.processors.dict_tracebacks(None, "error",
                                                      {"event": "x", "exc_info": exc_info})
    for event in (ours, theirs):
        rendered = json.dumps(mask_personal_data(None, "error", event), default=repr)
        assert_no_personal_data(rendered)
        stacks = json.loads(rendered)["exception"]
        assert stacks[0]["exc_type"] == "IntegrityError"
        names = {f["name"] for s in stacks for f in s["frames"]}
        assert {"_store_positional", "raise_everything"} <= names
        assert any("[SQL: INSERT INTO customers" in s["exc_value"] for s in stacks)
    frames = [f for s in json.loads(json.dumps(theirs, default=repr))["exception"]
              for f in s["frames"]]
    assert any(f["locals"] and set(f["locals"].values()) == {"***"} for f in frames)
    assert all(not f.get("locals") for s in ours["exception"] for f in s["frames"])


def test_an_exc_info_not_yet_rendered_is_rendered_masked_by_the_processor_itself() -> None:
    """In a processor chain where masking comes before ``format_exc_info``, the exception is
    still not written raw."""
    try:
        raise_everything()
    except sa_exc.IntegrityError:
        event = mask_personal_data(None, "error", {"event": "x", "exc_info": True})
    assert "exc_info" not in event
    assert_no_personal_data(event["exception"])
    assert_traceback_kept(event["exception"])


# --- the text forms ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    json.dumps(order()),
    json.dumps({"payload": json.dumps(order())}),  # JSON inside a JSON string
    json.dumps({"outer": json.dumps({"payload": json.dumps(order())})}),  # and once more
    repr(order()),
    repr(json.dumps(order())),
    str(Customer(id="C0042", name=NAME, email=EMAIL, phone=PHONE)),
    repr(Address(name=RECIPIENT, phone=PHONE, province="Beijing", city="Beijing", line1=STREET,
                 postal_code=POSTCODE)),
    f"name={NAME.split()[0]} phone={PHONE.replace(' ', '')} email={EMAIL} postal_code='{POSTCODE}'",
    f"SELECT 1 WHERE name = '{NAME}' AND line1 = '{STREET}'",
    f"customer_name: \"{NAME}\", recipient-name: '{RECIPIENT}', zip: '{POSTCODE}'",
    f"{{'name': '{NAME}', 'address': {{'street': {{'name': '{STREET}'}}}}}}",
    repr(order())[:140],  # cut short in the middle of a value
    f"DETAIL:  Key (lower(customer_name::text))=({NAME}) already exists.",
    f"DETAIL:  Failing row contains (C0042, {NAME}, {STREET}, null).",
    # a database error written as text by code (error=f"{exc}"[:300]), not through the formatter
    str(sa_exc.IntegrityError("INSERT INTO c VALUES ($1, $2, $3, $4, $5)",
                              ("C0042", NAME, EMAIL, PHONE, STREET), Exception("dup"))),
    str(sa_exc.IntegrityError("INSERT INTO c VALUES ($1, $2)", ("C0042", NAME),
                              Exception("dup")))[:94],  # cut inside the name
    str(sa_exc.IntegrityError("INSERT INTO o VALUES ($1)", (json.dumps(order()) * 3,),
                              Exception("dup"))),
    f"[parameters: ('C0042', '*** {NAME}', '{STREET} ***')]",  # "***" is no pass
    str(sa_exc.StatementError("bad", "INSERT INTO c VALUES (:id, :contact, :payload)",
                              {"id": "C0042", "contact": NAME, "payload": [order()]}, None)),
])
def test_personal_values_in_text_are_masked_by_their_keys(text: str) -> None:
    masked = mask_text(text)
    assert_no_personal_data(masked)
    assert "***" in masked


def test_what_is_not_personal_stays_readable() -> None:
    text = json.dumps(order())
    masked = json.loads(mask_text(text))
    assert masked["external_id"] == "PO-7731"
    assert masked["customer"]["id"] == "C0042"
    assert masked["lines"] == order()["lines"]
    sql = "UPDATE customers SET name=$1, email=:email WHERE customer_id = 'C0042'"
    assert mask_text(sql) == sql  # bind placeholders are not data
    assert mask_text("product_name=Oolong username=ops filename=a.csv") == \
        "product_name=Oolong username=ops filename=a.csv"
    detail = "Key (customer_id)=(C0042) is not present in table \"customers\"."
    assert mask_text(detail) == detail
    assert mask_text(mask_text(text)) == mask_text(text)  # masking twice changes nothing


def test_a_database_errors_parameters_are_masked_before_sqlalchemy_cuts_them() -> None:
    """SQLAlchemy renders at most 300 characters of a parameter, cutting the middle out: masked
    after the cut, the tail of a long address would be left without its key."""
    long_street = " ".join([STREET] * 12)
    data = order()
    data["shipping_address"]["line1"] = long_street
    err = sa_exc.IntegrityError("INSERT INTO orders (payload) VALUES ($1)",
                                (json.dumps(data),), Exception("duplicate"))
    assert "characters truncated" in str(err) and STREET in str(err)
    masked = exception_text(err)
    assert_no_personal_data(masked)
    assert '"shipping_address": "***"' in masked and "characters truncated" not in masked


@pytest.mark.parametrize("text", [
    "\\" * 100_000 + "x: 'y'",  # a run of backslashes before no quote
    "7" * 100_000 + "a",  # digits that never become a phone
    "a" * 100_000 + "@",  # a local part that never becomes an e-mail
    '{"name": [' * 10_000,  # containers that never close
    '\\"name\\": \\"x' * 10_000,  # escaped JSON cut short, many times on one line
    "[parameters: " + "'" * 100_000,
])
def test_masking_takes_time_in_proportion_to_the_text(text: str) -> None:
    """Text a sender controls (an order's notes inside an error) cannot make masking quadratic:
    unbounded, each of these takes a minute or more at this length."""
    started = time.perf_counter()
    mask_text(text)
    assert time.perf_counter() - started < 5
