"""The console from the outside: nothing without signing in, each role allowed exactly its
actions, CSRF on every state-changing call made with a session, sessions that expire and end at
sign-out (server side), passwords stored only as a standard slow hash, session tokens stored only
as digests."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orderflow.console.auth import SESSION_COOKIE, hash_password, verify_password
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service

PASSWORDS = {"viewer": "viewer-dev", "reviewer": "reviewer-dev", "admin": "admin-dev"}
UNKNOWN_ORDER = "00000000-0000-5000-8000-000000000000"
QUIET_TOPIC = "stock.low"  # a DLQ replay here disturbs no other test


@pytest.fixture(scope="module")
def console_base(pipeline: Pipeline) -> str:
    if "console" not in pipeline.services:
        pytest.skip("the console is not among ORDERFLOW_TEST_SERVICES")
    return f"http://127.0.0.1:{pipeline.stack.find('console').port}"


@pytest.fixture(scope="module")
async def database(pipeline: Pipeline) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(pipeline.infra.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def sign_in(client: httpx.AsyncClient, user: str, password: str | None = None) -> httpx.Response:
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, "the sign-in form carries a CSRF token"
    return await client.post("/login", data={"username": user,
                                             "password": password or PASSWORDS[user],
                                             "csrf_token": token.group(1), "next_url": "/"})


async def session_csrf(client: httpx.AsyncClient) -> str:
    home = await client.get("/")
    token = re.search(r'name="csrf-token" content="([^"]+)"', home.text)
    assert token is not None
    return token.group(1)


@contextlib.asynccontextmanager
async def signed_in(base: str, role: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False) as client:
        response = await sign_in(client, role)
        assert response.status_code == 303, response.text
        yield client, await session_csrf(client)


API_READS = ["/api/me", "/api/orders", f"/api/orders/{UNKNOWN_ORDER}", "/api/review-queue",
             "/api/topics", "/api/exceptions", "/api/dashboard", "/api/reports/summary",
             "/api/reports/summary.csv", "/api/audit"]
API_WRITES = [f"/api/orders/{UNKNOWN_ORDER}/approve", f"/api/orders/{UNKNOWN_ORDER}/reject",
              f"/api/dlq/{QUIET_TOPIC}/replay"]


async def test_nothing_answers_without_signing_in(console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, follow_redirects=False) as c:
        for path in API_READS:
            r = await c.get(path)
            assert r.status_code == 401, (path, r.status_code)
        for path in API_WRITES:
            r = await c.post(path, json={"comment": "x"})
            assert r.status_code == 401, (path, r.status_code)
        r = await c.get("/api/orders", headers={"Authorization": "Bearer not-the-token"})
        assert r.status_code == 401
        for page in ("/", "/orders", "/exceptions", "/reports"):
            r = await c.get(page)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), page


@pytest.mark.parametrize("role", ["viewer", "reviewer", "admin"])
async def test_each_role_may_do_exactly_its_actions(console_base: str, role: str) -> None:
    async with signed_in(console_base, role) as (client, csrf):
        for path in API_READS:
            r = await client.get(path)
            if path == "/api/audit":
                assert (r.status_code == 200) == (role == "admin"), (role, path, r.status_code)
                assert r.status_code in {200, 403}
            else:
                assert r.status_code in {200, 404}, (role, path, r.status_code, r.text[:200])
        headers = {"X-CSRF-Token": csrf}
        decide = await client.post(API_WRITES[0], json={"comment": "role test"}, headers=headers)
        if role == "viewer":
            assert decide.status_code == 403 and "may not" in decide.text
        else:  # allowed: review answers for the unknown order (or is not running)
            assert decide.status_code not in {401, 403}, decide.text
        # a whole-DLQ replay takes the count the operator confirmed (its GET gives it)
        expected = (await client.get(API_WRITES[2])).json()["pending"]
        replay = await client.post(API_WRITES[2], headers=headers, json={"expected": expected})
        if role == "admin":
            assert replay.status_code == 200, replay.text
        else:
            assert replay.status_code == 403


async def test_a_session_write_without_the_csrf_token_is_refused(console_base: str) -> None:
    async with signed_in(console_base, "admin") as (client, csrf):
        for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}):
            r = await client.post(API_WRITES[2], headers=headers)
            assert r.status_code == 403 and "CSRF" in r.text, headers
        r = await client.post(API_WRITES[2], data={"csrf_token": "forged"})
        assert r.status_code == 403
        expected = (await client.get(API_WRITES[2])).json()["pending"]
        assert (await client.post(API_WRITES[2], headers={"X-CSRF-Token": csrf},
                                  json={"expected": expected})).status_code == 200


async def test_the_sign_in_form_itself_needs_its_csrf_cookie(console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, follow_redirects=False) as c:
        page = await c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        c.cookies.clear()  # a cross-site form post carries no cookie of ours
        r = await c.post("/login", data={"username": "admin", "password": "admin-dev",
                                         "csrf_token": token.group(1)})
        assert r.status_code == 403
        assert SESSION_COOKIE not in r.cookies


async def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, follow_redirects=False) as c:
        wrong = await sign_in(c, "admin", "not-the-password")
    async with httpx.AsyncClient(base_url=console_base, timeout=30, follow_redirects=False) as c:
        unknown = await sign_in(c, "nobody-here", "whatever")
    assert wrong.status_code == unknown.status_code == 401
    assert SESSION_COOKIE not in wrong.cookies and SESSION_COOKIE not in unknown.cookies
    message = re.compile(r"Unknown user or wrong password")
    assert message.search(wrong.text) and message.search(unknown.text)


async def test_sessions_expire_and_end_at_sign_out(console_base: str, database: AsyncEngine) -> None:
    async with signed_in(console_base, "viewer") as (client, _csrf):
        cookie = client.cookies[SESSION_COOKIE]
        digest = hashlib.sha256(cookie.encode()).hexdigest()
        async with database.connect() as conn:
            row = (await conn.execute(sa.text(
                "SELECT * FROM console.console_sessions WHERE digest = :d"), {"d": digest})).one()
        assert cookie not in " ".join(str(v) for v in row), "only the token's digest is stored"
        assert (await client.get("/api/me")).status_code == 200
        async with database.begin() as conn:  # the clock passes the session's expiry
            await conn.execute(sa.text("UPDATE console.console_sessions SET expires_at = "
                                       "now() - interval '1 second' WHERE digest = :d"), {"d": digest})
        assert (await client.get("/api/me")).status_code == 401
    async with signed_in(console_base, "viewer") as (client, csrf):
        cookie = client.cookies[SESSION_COOKIE]
        await client.post("/logout", data={"csrf_token": csrf})
    async with httpx.AsyncClient(base_url=console_base, timeout=30,
                                 cookies={SESSION_COOKIE: cookie}) as stolen:
        assert (await stolen.get("/api/me")).status_code == 401, "sign-out ends the session"


async def test_the_session_cookie_is_http_only_and_bounded(console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, follow_redirects=False) as c:
        r = await sign_in(c, "viewer")
    set_cookie = next(v for k, v in r.headers.multi_items()
                      if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    assert "httponly" in set_cookie.lower()
    assert re.search(r"samesite=(lax|strict)", set_cookie.lower())
    assert re.search(r"max-age=\d+", set_cookie.lower())


@pytest.mark.unit
def test_passwords_are_stored_as_salted_scrypt_hashes() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$") and first != second, "a random salt per hash"
    assert "correct horse" not in first
    assert verify_password("correct horse", first) and not verify_password("Correct horse", first)
    # a configured "hash" that is really a plain-text password never lets anyone in
    assert not verify_password("plaintext-password", "plaintext-password")
    assert not verify_password("x", "scrypt$1$1$1$$")
