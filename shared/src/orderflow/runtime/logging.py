"""structlog set-up: JSON in services (readable on a terminal), stdlib loggers routed through it,
personal data masked by a processor so no caller has to remember to.

Every line goes to standard output (structlog's and the stdlib's: uvicorn, aiokafka,
SQLAlchemy, Python's warnings), as container platforms collect it; standard error is left to
what a command line says to the person who ran it. A line written inside an OpenTelemetry span
carries the span's ``trace_id`` (32 hex digits) and ``span_id`` (16), as OpenTelemetry writes
them (:func:`add_trace_ids`): a log line leads to its trace and back.

What is masked, wherever it appears in an event (nested mappings and lists, exception objects,
tracebacks, text):

- e-mail addresses and phone numbers, by their shape, in any text;
- the values of personal keys (names, street lines, postal codes, phones, e-mails; see
  ``PERSONAL_KEYS``), in mappings and in text that carries key/value pairs: JSON (also JSON
  inside a string inside JSON), Python reprs (``{'name': 'Li Lei'}``, ``Address(name='Li')``)
  and ``key=value`` pairs;
- exceptions: the formatted traceback (``format_exc_info``/``dict_tracebacks`` style), with a
  database error's parameters masked *before* SQLAlchemy renders and truncates them, and
  PostgreSQL's ``DETAIL`` (``Key (email)=(...)``, ``Failing row contains (...)``).

A name or an address written into free text without a key (``"order for Li Lei"``) cannot be
recognised; messages must not do that."""

from __future__ import annotations

import copy
import datetime as _dt
import decimal
import enum
import functools
import logging
import re
import sys
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import structlog
from opentelemetry import trace
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import ExceptionTransformer, ExcInfo

from orderflow.channels import LOG_FIELDS as CHANNEL_LOG_FIELDS
from orderflow.connector.retry import LOG_FIELDS as RETRY_LOG_FIELDS

# (a local part is matched from its start only: no quadratic scan of a long run without "@")
EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
PHONE_RE = re.compile(r"(?<![\w-])(\+?\d[\d -]{5,}\d)(?![\w-])")

EMAIL_KEYS = frozenset({"email", "e_mail", "customer_email", "recipient_email", "contact_email",
                        "buyer_email"})
PHONE_KEYS = frozenset({"phone", "mobile", "tel", "telephone", "phone_number", "mobile_phone",
                        "customer_phone", "recipient_phone", "contact_phone", "receiver_phone",
                        "receiver_mobile", "post_tel", "encrypt_post_tel"})
NAME_KEYS = frozenset({"name", "customer_name", "recipient", "recipient_name", "receiver",
                       "receiver_name", "post_receiver", "encrypt_post_receiver", "consignee",
                       "contact", "contact_name", "first_name", "last_name", "full_name",
                       "buyer_name"})
ADDRESS_KEYS = frozenset({"address", "shipping_address", "billing_address", "delivery_address",
                          "post_addr", "street", "line1", "line2", "address1", "address2",
                          "address_line1", "address_line2", "detail_address", "postal_code",
                          "postcode", "post_code", "zip", "zip_code"})
# city, province, district and country stay readable: they say where, not who
PERSONAL_KEYS = EMAIL_KEYS | PHONE_KEYS | NAME_KEYS | ADDRESS_KEYS
MASK = "***"
# what masking leaves of a value: not masked again (an e-mail's letter and domain, a phone's end)
_MASKED = re.compile(r"\*{3,}\d{0,4}|[A-Za-z0-9._%+-]\*\*\*@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")

_KEY_ALTERNATION = "|".join(
    re.escape(k).replace("_", "[_-]?") for k in sorted(PERSONAL_KEYS, key=len, reverse=True))
# a personal key in text: quoted (JSON, a repr, escaped JSON inside JSON) followed by ":", or bare
# followed by "=" (key=value, a repr's keyword) or by ":"/"=" and a quoted value
_KEY_IN_TEXT = re.compile(
    rf"""(?P<q>\\{{0,8}}["'])(?P<k1>{_KEY_ALTERNATION})(?P=q)\s*:\s*"""
    rf"""|(?<![\w"'\\])(?P<k2>{_KEY_ALTERNATION})(?:\s*[:=]\s*(?=\\{{0,8}}["'])|=)""",
    re.IGNORECASE)
_KEY_WORD = re.compile(rf"(?<!\w)(?:{_KEY_ALTERNATION})(?!\w)", re.IGNORECASE)
_BARE_TOKEN = re.compile(r"""[^\s,;'"(){}\[\]<>]+""")
_NUMBER_TOKEN = re.compile(r"\+?\d+")
_CLASS_CALL = re.compile(r"[A-Z]\w*(?=\()")
_ESCAPED_QUOTE = re.compile(r"""\\{1,8}["']""")
# no data: null and booleans, a statement's bind placeholders ($1, :name, %s, %(name)s, ?)
_NOT_DATA = re.compile(r"None|null|true|false|True|False|\$\d+|:\w+|%s|%\(\w+\)s|\?")
# PostgreSQL's DETAIL of a constraint violation
_PG_KEY = re.compile(r"\bKey \((?P<cols>[^()\n]*(?:\([^()\n]*\)[^()\n]*)*)\)=\((?P<vals>[^\n]*?)\)"
                     r"(?=(?: already exists| is not present| conflicts with|\.|\s*$))", re.M)
_PG_ROW = re.compile(r"(Failing row contains \()[^\n]*")
_SCAN_LIMIT = 100_000
# SQLAlchemy's rendering of a statement's parameters, and its cut of a long one
_SQL_PARAMETERS = re.compile(r"\[parameters: ([^\n]*)")
_SQLA_CUT = re.compile(r" \.\.\. \(\d+ characters truncated\) \.\.\. ")
_ID_LIKE = re.compile(r"[A-Za-z0-9_.:/+-]*\d[A-Za-z0-9_.:/+-]*|[a-z_]{1,40}")


def mask_email(value: str) -> str:
    if "@" not in value:
        return value
    return EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_phone(value: str) -> str:
    def _mask(m: re.Match[str]) -> str:
        digits = m.group(1)
        return "*" * max(len(digits) - 4, 3) + digits[-4:] if len(digits) >= 7 else digits

    return PHONE_RE.sub(_mask, value)


def _normal_key(key: str) -> str:
    return key.lower().replace("-", "_")


@functools.lru_cache(maxsize=4096)
def is_personal_key(key: str) -> bool:
    """Whether a key names personal data (any case; "-", "_" or nothing between words)."""
    return _normal_key(key) in PERSONAL_KEYS or _KEY_WORD.fullmatch(key) is not None


def _masked_scalar(key: str, value: str) -> str:
    """A personal key's text value: e-mails keep their first letter and domain, phones their last
    four digits, everything else becomes ``***``."""
    if value == "" or _MASKED.fullmatch(value):  # empty, or masked already
        return value
    normal = _normal_key(key)
    if normal in EMAIL_KEYS or "mail" in normal:
        masked = mask_email(value)
        return masked if masked != value else MASK
    if normal in PHONE_KEYS or any(p in normal for p in ("phone", "mobile", "tel")):
        digits = re.sub(r"\D", "", value)
        return MASK + digits[-4:] if len(digits) > 4 else MASK
    return MASK


def _closing_quote(text: str, start: int, quote: str, stop: int | None = None) -> int:
    """The index of the quote closing the string opened at ``start`` (-1: none on this line,
    before ``stop``)."""
    i = start + 1
    end = min(len(text), start + _SCAN_LIMIT, len(text) if stop is None else stop)
    while i < end:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == quote:
            return i
        if c == "\n":
            return -1
        i += 1
    return -1


def _balanced_end(text: str, start: int, stop: int) -> tuple[int, int]:
    """The index just after the bracket closing the one at ``start`` (-1: not closed before
    ``stop``), and how far the text was read to tell."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack: list[str] = []
    i = start
    end = min(len(text), start + _SCAN_LIMIT, stop)
    while i < end:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "\"'":
            close = _closing_quote(text, i, c, end)
            if close < 0:
                return -1, end
            i = close + 1
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in "}])":
            if not stack or stack.pop() != c:
                return -1, i
            if not stack:
                return i + 1, i + 1
        i += 1
    return -1, end


def _mask_pairs(text: str) -> str:
    """Mask the values of personal keys in text holding key/value pairs (JSON, reprs,
    key=value)."""
    out: list[str] = []
    done = 0  # text[:done] is in out
    pos = 0
    # what may be read looking for the end of containers that turn out not to end (a cut text):
    # a bound, so that text of many unclosed ones is not read again for each
    budget = 4 * len(text) + 10_000
    while (m := _KEY_IN_TEXT.search(text, pos)) is not None:
        key = m.group("k1") or m.group("k2")
        quoted_key = m.group("k1") is not None
        i = m.end()
        pos = i
        if i >= len(text):
            break
        c = text[i]
        inner: tuple[int, int] | None = None  # the span to mask
        whole = False  # the span is a container, replaced as a whole
        if c == "\\" and (eq := _ESCAPED_QUOTE.match(text, i)):
            quote = eq.group(0)
            close = text.find(quote, eq.end())
            newline = text.find("\n", eq.end(), close if close >= 0 else len(text))
            if close < 0 or 0 <= newline < close:  # cut short: mask to the end of the line
                close = newline if newline >= 0 else len(text)
                pos = close
            else:
                pos = close + len(quote)
            inner = (eq.end(), close)
        elif c in "\"'":
            close = _closing_quote(text, i, c)
            if close < 0:  # cut short (a truncated repr): mask to the end of the line
                newline = text.find("\n", i)
                close = newline if newline >= 0 else len(text)
            inner = (i + 1, close)
            pos = close + 1
        elif c in "{[(" or (call := _CLASS_CALL.match(text, i)) is not None:
            opening = i if c in "{[(" else call.end()  # type: ignore[union-attr]
            end, reached = _balanced_end(text, opening, opening + budget)
            budget -= reached - opening
            if end > 0:  # else: unbalanced (cut short): its own keys are masked one by one
                inner, whole, pos = (i, end), True, end
        else:
            tok = (_NUMBER_TOKEN if quoted_key else _BARE_TOKEN).match(text, i)
            if tok and not _NOT_DATA.fullmatch(tok.group(0)):
                inner = (i, tok.end())
                pos = tok.end()
        if inner is None:
            continue
        start, end = inner
        if whole:
            q = m.group("q") or ""
            replacement = f"{q}{MASK}{q}"
        else:
            replacement = _masked_scalar(key, text[start:end])
        out.append(text[done:start])
        out.append(replacement)
        done = end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def _mask_pg_detail(text: str) -> str:
    def _key(m: re.Match[str]) -> str:
        if not _KEY_WORD.search(m.group("cols")):
            return m.group(0)
        return f"Key ({m.group('cols')})=({MASK})"

    text = _PG_KEY.sub(_key, text) if "Key (" in text else text
    return _PG_ROW.sub(rf"\g<1>{MASK}).", text) if "Failing row" in text else text


def _mask_parameter_literals(body: str) -> str:
    """The string literals in SQLAlchemy's ``[parameters: ...]``: a positional one has no name
    to tell what it is, so it is kept (masked as text) only when it looks like an id, a code or a
    state, or holds JSON; a named one's name is kept and its value judged the same way."""
    out: list[str] = []
    done = 0
    i = 0
    while i < len(body):
        c = body[i]
        if c not in "\"'":
            i += 1
            continue
        close = _closing_quote(body, i, c)
        end = close if close >= 0 else len(body)
        after = body[end + 1:end + 3].lstrip()[:1] if close >= 0 else ""
        if after != ":":  # a parameter's name is followed by ":"
            out += [body[done:i + 1], _mask_parameter(body[i + 1:end])]
            done = end
        i = end + 1
    return "".join([*out, body[done:]])


def _mask_parameter(value: str) -> str:
    if value.lstrip()[:1] in {"{", "["}:  # JSON: masked by its keys; a cut one loses its tail
        cut = _SQLA_CUT.search(value)
        return mask_text(value[:cut.start()]) + cut.group(0) + MASK if cut else mask_text(value)
    if _ID_LIKE.fullmatch(value) or EMAIL_RE.fullmatch(value) or PHONE_RE.fullmatch(value):
        return mask_text(value)
    return value if _MASKED.fullmatch(value) else MASK  # (masked already: the pre-render pass)


def mask_text(value: str) -> str:
    """Mask personal data in text: e-mails, phones, personal keys' values, a database error's
    parameters and PostgreSQL's details."""
    if "Key (" in value or "Failing row" in value:
        value = _mask_pg_detail(value)
    if "[parameters: " in value:
        value = _SQL_PARAMETERS.sub(
            lambda m: "[parameters: " + _mask_parameter_literals(m.group(1)), value)
    if "=" in value or (":" in value and ('"' in value or "'" in value)):  # pairs need these
        value = _mask_pairs(value)
    return mask_phone(mask_email(value))


# --- exceptions -------------------------------------------------------------------------------


def _exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc] if exc is not None else []
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]
        todo += [x for x in getattr(e, "exceptions", ()) if isinstance(x, BaseException)]


def _mask_positional(value: Any) -> Any:
    """A positional database parameter: no column name says what it is, so text is kept only
    when it looks like an id, a code or a state (and then still masked as text)."""
    if isinstance(value, str):
        return _mask_parameter(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return MASK
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_positional(v) for v in value]
    return _mask_value("", value)


def mask_db_params(params: Any) -> Any:
    """SQLAlchemy's ``StatementError.params``: named (a mapping), positional (a sequence) or many
    of either (executemany)."""
    if isinstance(params, Mapping):
        return {k: _mask_value(str(k), v) for k, v in params.items()}
    if isinstance(params, list | tuple):
        masked = [mask_db_params(p) if isinstance(p, Mapping | list | tuple)
                  else _mask_positional(p) for p in params]
        return tuple(masked) if isinstance(params, tuple) else masked
    return _mask_positional(params)


def _db_param_replacements(exc: BaseException | None) -> list[tuple[str, str]]:
    """For each database error in the chain: its text, and its text with the parameters masked
    before SQLAlchemy renders (and truncates) them."""
    found: list[tuple[str, str]] = []
    for e in _exception_chain(exc):
        params = getattr(e, "params", None)
        if params is None or not hasattr(e, "statement") or getattr(e, "hide_parameters", False):
            continue
        try:
            safe = copy.copy(e)
            safe.params = mask_db_params(params)  # type: ignore[attr-defined]
            raw, masked = str(e), str(safe)
        except Exception:  # noqa: BLE001, S112 - the text is still masked as a whole
            continue
        if raw and raw != masked:
            found.append((raw, masked))
    return found


def _replace_in(value: Any, replacements: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for raw, masked in replacements:
            value = value.replace(raw, masked)
        return value
    if isinstance(value, Mapping):
        return {k: _replace_in(v, replacements) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_in(v, replacements) for v in value]
    return value


def exception_text(exc: BaseException) -> str:
    """``str(exc)`` with personal data masked (a database error's parameters first)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = f"<unprintable {type(exc).__name__}>"
    return mask_text(_replace_in(text, _db_param_replacements(exc)))


def masking_exception_formatter(formatter: ExceptionTransformer) -> ExceptionTransformer:
    """Wrap a structlog exception formatter (the traceback text, or ``ExceptionDictTransformer``)
    so that database errors' parameters are masked before they are rendered and truncated; the
    rest is masked by ``mask_personal_data`` (the ``exception`` field)."""
    def _format(exc_info: ExcInfo) -> Any:
        return _replace_in(formatter(exc_info), _db_param_replacements(exc_info[1]))

    return _format


def _plain_traceback(exc_info: ExcInfo) -> str:
    import traceback

    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


#: ``structlog.processors.format_exc_info`` and ``dict_tracebacks``, masking database parameters
format_exc_info = ExceptionRenderer(masking_exception_formatter(_plain_traceback))
#: (local variables are left out: a tuple of a person's details has no key to be masked by)
dict_tracebacks = ExceptionRenderer(
    masking_exception_formatter(ExceptionDictTransformer(show_locals=False)))

_FRAME_KEEP = frozenset({"filename", "lineno", "name"})


def _mask_locals(value: Any) -> Any:
    return {k: MASK for k in value} if isinstance(value, Mapping) else _mask_value("", value)


def _mask_stack(stack: Mapping[str, Any]) -> dict[str, Any]:
    """One stack of ``dict_tracebacks`` output: frames keep their function names, local
    variables only their names."""
    out: dict[str, Any] = {}
    for k, v in stack.items():
        if k == "exc_type":
            out[k] = v
        elif k == "frames" and isinstance(v, list):
            out[k] = [{fk: fv if fk in _FRAME_KEEP else _mask_locals(fv) if fk == "locals"
                       else _mask_value(fk, fv) for fk, fv in f.items()}
                      if isinstance(f, Mapping) else _mask_value("", f) for f in v]
        elif k == "exceptions" and isinstance(v, list):
            out[k] = [{tk: [_mask_stack(s) if isinstance(s, Mapping) else _mask_value("", s)
                            for s in tv] if tk == "stacks" and isinstance(tv, list) else tv
                       for tk, tv in t.items()} if isinstance(t, Mapping) else _mask_value("", t)
                      for t in v]
        else:
            out[k] = _mask_value(k, v)
    return out


def _mask_exception_field(value: Any) -> Any:
    if isinstance(value, list):
        return [_mask_stack(s) if isinstance(s, Mapping) else _mask_value("", s) for s in value]
    return _mask_value("", value)


# --- events -----------------------------------------------------------------------------------

_PLAIN = (int, float, decimal.Decimal, uuid.UUID, _dt.date, _dt.time, _dt.timedelta, enum.Enum)


def _mask_value(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value == ""):
        return value
    if key and is_personal_key(key):
        if isinstance(value, str):
            return _masked_scalar(key, value)
        if isinstance(value, int) and not isinstance(value, bool):
            return _masked_scalar(key, str(value))
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {exception_text(value)}"
    dump = getattr(value, "model_dump", None)  # a pydantic model: by its fields
    if callable(dump):
        try:
            return _mask_value(key, dump(mode="json"))
        except Exception:  # noqa: BLE001, S110 - then by its repr
            pass
    return mask_text(repr(value))  # what the renderer would print, masked


_STRUCTLOG_META = frozenset({"_record", "_from_structlog"})


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask e-mails, phones, names and addresses in every field, the
    exception included (an ``exc_info`` not yet rendered is rendered here, masked)."""
    if "exc_info" in event_dict:
        event_dict = format_exc_info(_logger, _method, event_dict)
    for key in list(event_dict):
        if key in _STRUCTLOG_META:  # the stdlib record ProcessorFormatter passes along
            continue
        value = event_dict[key]
        event_dict[key] = (_mask_exception_field(value) if key == "exception"
                           else _mask_value(key, value))
    return event_dict


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the current OpenTelemetry span's ``trace_id`` and ``span_id``, in
    OpenTelemetry's hex form, when there is a span with a valid context (one the SDK records, or
    a remote parent's); never zeros. Without one, a line written while an event is handled keeps
    the event's ``trace_id`` from its log context (``UnitOfWork.handling``), with no span id."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


_configured = False


def configure_logging(service: str, *, fmt: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and the stdlib root logger once per process, writing to standard
    output. Masking is the last step before rendering but the trace ids, after the exception is
    formatted, for structlog's loggers and the stdlib's alike."""
    global _configured
    json_output = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        format_exc_info,
        mask_personal_data,
        add_trace_ids,  # after masking: a span id of decimal digits only is not a phone number
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # a stdlib record's fields: the connector kit's retries and channel registry log theirs
        # as extras
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(allow=RETRY_LOG_FIELDS + CHANNEL_LOG_FIELDS),
                           *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.captureWarnings(True)  # Python's warnings too: through the "py.warnings" logger
    root.setLevel(level)
    for noisy in ("aiokafka", "sqlalchemy.engine", "faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    _configured = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
