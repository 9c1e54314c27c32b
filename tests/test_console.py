"""The switchover console served at /console (signaling/web/console.html, static/console.js), in a
real Chromium against a real server: an administrator signs in with the API key and secret, sees the
district, its schools and classrooms with their modes and the lessons in session, switches one school
online after a confirmation, and sees at once how many clients were told, then the audit row; the
light peers (loadtest.peer) standing in for classroom boxes show that exactly that school's clients
heard it. Wrong credentials and a server out of reach get a message that says what to do.

Every wait is bounded (playwright's 15 s default, `eventually`). With KELIAN_SCREENSHOTS set, the
console is also saved in English and in Chinese for the README (`make screenshots`).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from browser import new_page, save_screenshot_dir
from classroom_peers import api, connected, events, org, roster
from kelian_server import API_KEY, API_SECRET, Server, eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips every test here, or fails them in CI
    expect = None  # type: ignore[assignment]

TABLET = {"width": 768, "height": 1024}
HEAD = "Head of s1"
MILLISECONDS = re.compile(r"^\d[\d.,]* ms$")  # the time taken, as the page writes it


async def sign_in(page: Page, key: str, secret: str, by: str) -> None:
    await page.locator("#api-key").fill(key)
    await page.locator("#api-secret").fill(secret)
    await page.locator("#by").fill(by)
    await page.locator("#signin").click()


def scope(page: Page, kind: str, record: str) -> Locator:
    return page.locator(f'[data-scope="{kind}"][data-id="{record}"]')


def switch(where: Locator, to: str) -> Locator:
    """The switch of that scope itself, not one of the scopes inside it."""
    return where.locator(f':scope > .scope-head button.switch[data-to="{to}"]')


def mode_of(where: Locator) -> Locator:
    return where.locator(":scope > .scope-head .mode")


async def pictures(page: Page, name: str) -> None:
    """The README shows the console in both languages (docs/img/<name>-<lang>.png)."""
    folder = save_screenshot_dir()
    if folder is None:
        return
    for lang in ("en", "zh"):
        await page.locator("#lang").select_option(lang)
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if lang == "zh" else "en")
        await page.evaluate("() => document.fonts.ready")
        await page.screenshot(path=folder / f"{name}-{lang}.png", animations="disabled", full_page=True)
    await page.locator("#lang").select_option("en")


async def test_a_school_goes_online_from_the_console(kelian: Server, browser: Browser) -> None:
    status, _ = await api(kelian, "POST", "/import", org(time.time()))
    assert status == 200
    one, two = await roster(kelian, "s1-maths"), await roster(kelian, "s2-maths")
    async with (
        connected(kelian, [one["box-s1-a"], one["box-s1-b"], one["s1-t"]]) as school_one,
        connected(kelian, [two["box-s2-a"], two["box-s2-b"]]) as school_two,
    ):
        page = await new_page(browser, label="console")
        await page.goto(kelian.url + "/console")
        await expect(page).to_have_title("kelian switchover console")
        await expect(page.locator("body")).to_have_attribute("data-view", "login")
        await sign_in(page, API_KEY, API_SECRET, HEAD)
        await expect(page.locator("body")).to_have_attribute("data-view", "console")
        await expect(page.locator("#who")).to_have_text(f"Signed in as {HEAD}")
        stored = await page.evaluate("() => [JSON.stringify(localStorage), sessionStorage.length]")
        assert API_SECRET not in stored[0], "the secret is kept for this tab only"
        assert stored[1] > 0

        # the tree: the district, its two schools, their classrooms and lessons in session, all in person
        district, s1, s2 = (
            scope(page, "district", "d1"),
            scope(page, "school", "s1"),
            scope(page, "school", "s2"),
        )
        await expect(district.locator(".scope-name").first).to_have_text("District One")
        await expect(mode_of(district)).to_have_text("In person")
        await expect(district.locator(":scope > .scope-head")).to_contain_text("Lessons in session: 2")
        await expect(district.locator(":scope > .scope-head")).to_contain_text("Connected: 5")
        for school, name, peers in ((s1, "School s1", 3), (s2, "School s2", 2)):
            await expect(school.locator(".scope-name")).to_have_text(name)
            await expect(school).to_have_attribute("data-mode", "offline")
            await expect(mode_of(school)).to_have_text("In person")
            await expect(school.locator(":scope > .scope-head")).to_contain_text(f"Connected: {peers}")
        await expect(s1.locator(".classroom-chip")).to_have_text(["s1-a", "s1-b"])
        lesson = scope(page, "lesson", "s1-maths")
        await expect(lesson.locator(".lesson-title")).to_have_text("Maths")
        await expect(lesson).to_contain_text("Dual teacher")
        await expect(lesson.locator(".lesson-classrooms")).to_have_text("s1-a · s1-b")
        await expect(lesson.locator(".own")).to_have_text("as its school")
        await expect(lesson.locator(".mode")).to_have_attribute("data-mode", "offline")
        await expect(switch(s1, "offline")).to_have_count(0)  # all of it is in person already
        await expect(page.locator("#audit-empty")).to_be_visible()

        # a confirmation that is cancelled switches nothing
        await switch(district, "online").click()
        dialog = page.locator("#confirm")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator("#confirm-title")).to_have_text("Switch district “District One” online?")
        await expect(dialog.locator("#confirm-lessons")).to_have_text("Lessons in session now: 2")
        await page.locator("#confirm-cancel").click()
        await expect(dialog).to_be_hidden()

        # the school's switch: the confirmation names it and what it covers
        await switch(s1, "online").click()
        await expect(dialog.locator("#confirm-title")).to_have_text("Switch school “School s1” online?")
        await expect(dialog.locator("#confirm-lessons")).to_have_text("Lessons in session now: 1")
        await expect(dialog.locator("#confirm-connected")).to_have_text("People connected now: 3")
        await expect(dialog.locator("#confirm-by")).to_have_value(HEAD)
        await expect(page.locator("#confirm-go")).to_have_text("Switch online")
        await page.locator("#confirm-go").click()
        await expect(dialog).to_be_hidden()

        result = page.locator("#result")
        await expect(result).to_have_attribute("data-state", "done")
        await expect(page.locator("#result-told")).to_have_text(str(len(school_one)))
        await expect(page.locator("#result-lessons")).to_have_text("1")
        await expect(page.locator("#result-rooms")).to_have_text("0")  # the peers had opened it
        await expect(page.locator("#result-ms")).to_have_text(MILLISECONDS)
        await expect(page.locator("#result-text")).to_have_text("Online now: school “School s1”")

        # the tree read again: s1 and its lesson online, s2 not; the district is mixed, so both ways
        await expect(s1).to_have_attribute("data-mode", "online")
        await expect(mode_of(s1)).to_have_text("Online")
        await expect(lesson).to_have_attribute("data-mode", "online")
        await expect(s2).to_have_attribute("data-mode", "offline")
        await expect(switch(district, "online")).to_have_count(1)
        await expect(switch(district, "offline")).to_have_count(1)
        await expect(district.locator(":scope > .scope-head")).to_contain_text("Online: 1 of 2 schools")

        rows = page.locator("#audit-body tr")
        await expect(rows).to_have_count(1)
        row = rows.first
        await expect(row.locator("td.by")).to_have_text(HEAD)
        await expect(row.locator("td.scope")).to_have_text("School: School s1")
        await expect(row.locator("td.told")).to_have_text("3")
        await expect(row.locator(".mode")).to_have_text("Online")
        switch_id = await row.get_attribute("data-switch")
        assert switch_id and switch_id.startswith("SW_")

        for peer in school_one:
            assert await eventually(lambda p=peer: bool(events(p, "mode"))), "every s1 client is told"  # type: ignore[misc]
            (event,) = events(peer, "mode")
            assert (event["mode"], event["switch"], event["by"]) == ("online", switch_id, HEAD)
            assert event["scope"] == {"school": "s1"}
        for peer in school_two:
            assert not events(peer, "mode"), "the other school hears nothing"
        status, body = await api(kelian, "GET", "/schools/s1")
        assert body["mode"] == "online"

        await pictures(page, "console")

        # one lesson on its own: s2's lesson goes online, its school stays in person
        s2_lesson = scope(page, "lesson", "s2-maths")
        await s2_lesson.locator('button.switch[data-to="online"]').click()
        await expect(dialog.locator("#confirm-title")).to_have_text("Switch lesson “Maths” online?")
        await expect(dialog.locator("#confirm-connected")).to_have_text("People connected now: 2")
        await expect(dialog.locator("#confirm-note")).to_be_hidden()
        await page.locator("#confirm-go").click()
        await expect(result).to_have_attribute("data-state", "done")
        await expect(page.locator("#result-text")).to_have_text("Online now: lesson “Maths”")
        await expect(page.locator("#result-told")).to_have_text(str(len(school_two)))
        await expect(s2_lesson).to_have_attribute("data-mode", "online")
        await expect(s2_lesson.locator(".own")).to_have_text("set for this lesson")
        await expect(s2).to_have_attribute("data-mode", "offline")
        await expect(rows).to_have_count(2)
        await expect(rows.first.locator("td.scope")).to_have_text("Lesson: Maths")
        for peer in school_two:
            assert await eventually(lambda p=peer: bool(events(p, "mode")))  # type: ignore[misc]
            assert events(peer, "mode")[-1]["scope"] == {"lessons": ["s2-maths"]}
        assert all(len(events(peer, "mode")) == 1 for peer in school_one), "s1 hears nothing more"

        # on a tablet: nothing wider than the screen, the switches big enough for a finger
        await page.set_viewport_size(TABLET)
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        box = await switch(s2, "online").bounding_box()
        assert box is not None and box["height"] >= 40 and box["x"] + box["width"] <= TABLET["width"]

        # a reload of the tab stays signed in (sessionStorage), and the tree says the same
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-view", "console")
        await expect(scope(page, "school", "s1")).to_have_attribute("data-mode", "online")
        await expect(page.locator("#audit-body tr")).to_have_count(2)


async def test_wrong_credentials_and_a_lost_server_say_what_to_do(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser, label="console")
    await page.goto(kelian.url + "/console")
    error = page.locator("#error")

    await page.locator("#signin").click()
    await expect(error).to_have_attribute("data-code", "need_credentials")
    await expect(error).to_contain_text("Enter the API key and the API secret")

    await sign_in(page, API_KEY, "not-the-secret", HEAD)
    await expect(error).to_have_attribute("data-code", "unauthorized")
    await expect(error).to_have_attribute("role", "alert")
    await expect(error).to_contain_text("The API key or secret is wrong")
    await expect(error).to_contain_text("KELIAN_API_KEY and KELIAN_API_SECRET")
    await expect(page.locator("body")).to_have_attribute("data-view", "login")
    await expect(page.locator("#api-secret")).to_have_value("")
    assert await page.evaluate("() => sessionStorage.getItem('kelian.console.secret')") is None
    await page.locator("#lang").select_option("zh")
    await expect(error).to_contain_text("API 密钥或密码不正确")
    await page.locator("#lang").select_option("en")

    await sign_in(page, API_KEY, API_SECRET, HEAD)
    await expect(page.locator("body")).to_have_attribute("data-view", "console")
    await expect(error).to_be_hidden()
    await expect(page.locator("#tree-empty")).to_contain_text("No district yet")

    # the server out of reach: the page says so, and says nothing once it answers again
    await page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
    await page.locator("#refresh").click()
    await expect(error).to_have_attribute("data-code", "network")
    await expect(error).to_contain_text("Cannot reach the kelian server")
    await expect(page.locator("body")).to_have_attribute("data-view", "console")
    await page.unroute("**/api/v1/**")
    await page.locator("#refresh").click()
    await expect(error).to_be_hidden()

    # a server (or the proxy in front of it) that fails: which failure, and what to do
    await page.route("**/api/v1/switchovers*", lambda route: route.fulfill(status=503, body="upstream down"))
    await page.locator("#refresh").click()
    await expect(error).to_have_attribute("data-code", "http_503")
    await expect(error).to_contain_text("The kelian server could not answer (503")
    await page.unroute("**/api/v1/switchovers*")

    # a secret that stops working (changed on the server) sends the tab back to sign in
    await page.evaluate("() => sessionStorage.setItem('kelian.console.secret', 'changed')")
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-view", "login")
    await expect(error).to_have_attribute("data-code", "unauthorized")
