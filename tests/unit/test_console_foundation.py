"""The console's foundation: sign-in with an API key kept only in a sealed cookie, CSRF and
Origin checks on every POST, the API's authorisation (another tenant's device is a 404), the
Content-Security-Policy, and the two languages."""

from __future__ import annotations

import re
import time
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from cityhub.schemas.registry import Role
from cityhub.streams.console.i18n import CATALOGUE, choose_language
from cityhub.streams.console.session import Session, SessionCodec
from cityhub.streams.registry.principals import Principal

from .console_support import KEK, running_console

CONSOLE = Path(__file__).resolve().parents[2] / "streams" / "console"


def _set_cookie(page_headers: object) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for value in page_headers.getall("Set-Cookie", []):  # type: ignore[attr-defined]
        jar.load(value)
    return jar


async def test_a_page_needs_a_sign_in_and_the_sign_in_page_is_strict() -> None:
    async with running_console() as browser:
        page = await browser.get("/console/devices")
        assert page.status == 303
        assert page.location == "/console/sign-in"
        cookie = _set_cookie(page.headers)["cityhub_console"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/console"
        assert int(cookie["max-age"]) > 0
        page = await browser.get("/console/sign-in")
        assert page.status == 200
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "<script>" not in page.text
        assert " style=" not in page.text
        assert '<html lang="nl">' in page.text  # Dutch unless the browser prefers English


async def test_sign_in_keeps_the_key_only_in_the_sealed_cookie() -> None:
    async with running_console() as browser:
        await browser.get("/console/sign-in")
        page = await browser.post("/console/sign-in", {"key": browser.keys["op_a"]})
        assert page.status == 303
        assert page.location == "/console/devices"
        sealed = _set_cookie(page.headers)["cityhub_console"].value
        assert browser.keys["op_a"] not in sealed
        session = SessionCodec(KEK).open(sealed, time.time())
        assert session is not None
        assert session.secret == browser.keys["op_a"]
        page = await browser.get("/console/devices")
        assert page.status == 200
        assert "a-1" in page.text
        assert "a-2" in page.text
        assert "b-1" not in page.text
        # Sign-out clears it: the next page asks for a sign-in again.
        page = await browser.post("/console/sign-out")
        assert page.status == 303
        assert _set_cookie(page.headers)["cityhub_console"].value == ""
        assert (await browser.get("/console/devices")).status == 303


async def test_a_wrong_or_revoked_key_does_not_sign_in() -> None:
    async with running_console() as browser:
        await browser.get("/console/sign-in")
        page = await browser.post("/console/sign-in", {"key": "chk_0123_nope"})
        assert page.status == 401
        assert 'aria-invalid="true"' in page.text
        await browser.sign_in("op_a")
        key_id = browser.keys["op_a"].removeprefix("chk_").split("_")[0]
        await browser.registry.revoke_key(Principal.system(), key_id)
        assert (await browser.get("/console/devices")).status == 303


async def test_every_post_needs_the_sessions_csrf_token_and_this_origin() -> None:
    async with running_console() as browser:
        await browser.get("/console/sign-in")
        page = await browser.post("/console/sign-in", {"key": browser.keys["op_a"]}, csrf=False)
        assert page.status == 403
        page = await browser.post(
            "/console/sign-in", {"key": browser.keys["op_a"], "csrf": "forged"}, csrf=False
        )
        assert page.status == 403
        page = await browser.post(
            "/console/sign-in",
            {"key": browser.keys["op_a"]},
            headers={"Origin": "https://evil.example"},
        )
        assert page.status == 403
        page = await browser.post(
            "/console/sign-in",
            {"key": browser.keys["op_a"]},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert page.status == 403
        assert (await browser.get("/console/devices")).status == 303  # still signed out


async def test_another_tenants_device_is_not_found() -> None:
    async with running_console() as browser:
        await browser.sign_in("op_a")
        assert (await browser.get("/console/devices/b-1")).status == 404
        assert (await browser.get("/console/devices/a-1")).status == 200


async def test_an_admin_picks_a_tenant() -> None:
    async with running_console() as browser:
        await browser.sign_in("admin")
        page = await browser.get("/console/devices")
        assert 'id="tenant-picker"' in page.text
        page = await browser.post("/console/tenant", {"tenant": "beta"})
        assert page.status == 303
        page = await browser.get("/console/devices")
        assert "b-1" in page.text
        assert "a-1" not in page.text
        assert (await browser.post("/console/tenant", {"tenant": "nope"})).status == 404


async def test_the_language_switch_and_accept_language() -> None:
    async with running_console() as browser:
        page = await browser.get("/console/sign-in", headers={"Accept-Language": "en-GB,en"})
        assert '<html lang="en">' in page.text
        assert "Sign in" in page.text
        page = await browser.post("/console/language", {"lang": "nl", "next": "/console/sign-in"})
        assert page.status == 303
        assert page.location == "/console/sign-in"
        page = await browser.get("/console/sign-in", headers={"Accept-Language": "en"})
        assert '<html lang="nl">' in page.text
        assert "Aanmelden" in page.text
        # Never an open redirect.
        page = await browser.post("/console/language", {"lang": "en", "next": "//evil.example"})
        assert page.location == "/console/"


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "nl"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "de-DE,nl;q=0.5,en;q=0.4", "nl"),
        (None, "nl;q=0,en", "en"),
        (None, "fr", "nl"),
        ("en", "nl", "en"),
        ("xx", "en;q=abc", "nl"),
    ],
)
def test_choose_language(cookie: str | None, header: str | None, expected: str) -> None:
    assert choose_language(cookie, header, "nl") == expected


def test_a_session_cookie_opens_only_unchanged_unexpired_and_with_its_kek() -> None:
    codec = SessionCodec(KEK)
    now = time.time()
    session = Session.anonymous(now, 60).signed_in("chk_a_b", now, 60)
    sealed = codec.seal(session)
    assert codec.open(sealed, now) == session
    assert codec.open(sealed, now + 61) is None
    assert SessionCodec(bytes(32)).open(sealed, now) is None
    flipped = sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]
    assert codec.open(flipped, now) is None
    for junk in ("", "x", "%%%", "A" * 5000, sealed[:-4]):
        assert codec.open(junk, now) is None


def test_every_message_a_template_or_page_uses_is_in_the_catalogue_in_both_languages() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z0-9_.]+)["']""")
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("*.py")]:
        used |= set(pattern.findall(path.read_text()))
    missing = sorted(key for key in used if key not in CATALOGUE)
    assert not missing, missing
    for key, (nl, en) in CATALOGUE.items():
        assert nl.strip(), key
        assert en.strip(), key


def test_admin_role_exists() -> None:
    assert Role.ADMIN.value == "admin"


async def test_the_console_says_when_its_assets_were_not_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("cityhub.streams.console.app.VENDOR", tmp_path / "missing")
    async with running_console() as browser:
        page = await browser.get("/console/sign-in", headers={"Accept-Language": "en"})
        assert "make console-assets" in page.text
        assert "third-party/htmx.min.js" not in page.text


async def test_hostile_requests_are_refused_plainly() -> None:
    async with running_console() as browser:
        await browser.get("/console/sign-in")
        big = await browser.post("/console/sign-in", {"key": "chk_" + "a" * 70_000})
        assert big.status == 413
        long_key = await browser.post("/console/sign-in", {"key": "chk_" + "a" * 600})
        assert long_key.status == 401
        junk = await browser.get("/console/devices", cookies={"cityhub_console": "x" * 5000})
        assert junk.status == 303  # not a session: signed out, never a 500
        await browser.sign_in("op_a")
        page = await browser.get("/console/devices/" + "%00%ff" * 200)
        assert page.status == 404
        page = await browser.get("/console/devices/a-1?hours=99999&quantity=%3Cx%3E")
        assert page.status == 200


async def test_console_without_a_slash_goes_to_the_console_and_sign_ins_are_counted() -> None:
    from prometheus_client import REGISTRY

    def count(result: str) -> float:
        value = REGISTRY.get_sample_value(
            "cityhub_console_sign_ins_total", {"method": "key", "result": result}
        )
        return value or 0.0

    async with running_console() as browser:
        page = await browser.get("/console")
        assert page.status == 308
        assert page.location == "/console/"
        ok, refused = count("ok"), count("refused")
        await browser.get("/console/sign-in")
        await browser.post("/console/sign-in", {"key": "chk_1_2"})
        await browser.sign_in("op_a")
        assert count("ok") == ok + 1
        assert count("refused") == refused + 1
