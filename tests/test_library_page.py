"""The air-classroom library's page (/library: signaling/web/library.html, static/library.js) in a real
Chromium against a real server, with a lesson really recorded and filed (tests/library_lessons.py).

A student's link lists the published items only (a draft beside them is not there, and not served),
searches and filters them, and plays one: the MP4, which Chromium fetches with range requests, its
currentTime going forward. A teacher's link shows the drafts too; a phone gets its layout; a TV
(&layout=tv) is driven with the arrow keys and Enter, as by a remote. HLS: this Debian Chromium plays
it natively (canPlayType says "maybe", and it does), so the page uses no HLS library; the HLS link
that the page gives TVs and set-top boxes does not play yet, because the playlist's segments are
relative URLs that lose the link's ?token= (a server gap: see
test_the_hls_link_for_tvs_plays_natively). A reviewer signs in with the API key and secret, files
the recording (its progress shown), submits and publishes one item, rejects another with a reason,
edits the catalogue, and cuts a micro-lesson on the player's timeline.

Every wait is bounded (playwright's 15 s default, the finishing job's minute); "playing" is the
video's own clock going forward, never a time measured here. With KELIAN_SCREENSHOTS set, the pages
are also saved in English and in Chinese for the README (`make screenshots`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest_asyncio
from browser import new_page, save_screenshot_dir
from classroom_peers import api
from kelian_server import API_KEY, API_SECRET, Server
from library_lessons import CATALOGUE, Chalkboard, fetch, filed, recording, review

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.async_api import Browser, Page, Request, Route

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips every test here, or fails them in CI
    expect = None  # type: ignore[assignment]

PHONE = {"width": 390, "height": 844}
TV = {"width": 1280, "height": 720}
REVIEWER = "李老师"
SEGMENT = re.compile(r"/hls/segment\d+\.ts(\?|$)")


@pytest_asyncio.fixture
async def recorded_board(tmp_path: Path) -> AsyncIterator[tuple[Server, str]]:
    """A server with a lesson recorded from a chalkboard camera (posters a person recognises, for
    the pictures); the recording's folder name."""
    async with recording(tmp_path, Chalkboard) as recorded:
        yield recorded


def link(kelian: Server, token: str, **extra: str) -> str:
    """A library link as a school system builds it."""
    return f"{kelian.url}/library?{urlencode({'token': token, **extra})}"


def duration(seconds: float) -> str:
    """As the page writes a short item's length."""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


async def plays(page: Page, selector: str = "#video", media_seconds: float = 1.0) -> None:
    """The video's own clock goes forward by `media_seconds` while it is not paused: it plays (bounded
    by playwright's timeout; nothing here measures wall-clock time)."""
    start = await page.evaluate("(s) => document.querySelector(s).currentTime", selector)
    await page.wait_for_function(
        "([s, t]) => { const v = document.querySelector(s); return !v.paused && v.currentTime > t; }",
        arg=[selector, start + media_seconds],
    )


async def set_language(page: Page, lang: str) -> None:
    """As the language menu does, without taking the focus from where a remote left it; then the
    fonts and pictures drawn anew, and every video with a frame to show (no loading wheel)."""
    await page.evaluate("async (lang) => (await import('/static/i18n.js')).setLanguage(lang)", lang)
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if lang == "zh" else "en")
    await page.wait_for_function(
        """() => document.fonts.status === "loaded"
                 && [...document.images].every((i) => i.complete)
                 && [...document.querySelectorAll("video[src]")]
                      .every((v) => !v.seeking && v.readyState >= 3)"""
    )


async def pictures(page: Page, name: str, full_page: bool = False) -> None:
    """The README shows the library in both languages (docs/img/<name>-<lang>.png); a notice, which
    fades by itself, is left out; the page is left in the language it had."""
    folder = save_screenshot_dir()
    if folder is None:
        return
    before = await page.locator("#lang").input_value()
    await page.evaluate("() => { document.getElementById('notice').hidden = true; }")
    for lang in ("en", "zh"):
        await set_language(page, lang)
        await page.screenshot(path=folder / f"{name}-{lang}.png", animations="disabled", full_page=full_page)
    await set_language(page, before)


async def poster_shown(page: Page, item: str) -> None:
    await page.wait_for_function(
        """(id) => { const img = document.querySelector(`.lib-tile[data-id="${id}"] img`);
                     return img && img.complete && img.naturalWidth > 0; }""",
        arg=item,
    )


# -- students, teachers, phones and TVs ---------------------------------------------------------------


async def test_a_student_finds_and_plays_published_lessons(
    recorded_board: tuple[Server, str], browser: Browser
) -> None:
    kelian, recording = recorded_board
    lesson = await filed(kelian, recording)
    await review(kelian, lesson["id"], "submit", "publish", reviewer=REVIEWER)
    cuts = []
    for title in ("约分练习", "通分草稿"):
        status, cut = await api(
            kelian, "POST", f"/library/{lesson['id']}/micro", {"start": 1.0, "end": 4.0, "title": title}
        )
        assert status == 201, cut
        cuts.append(cut)
    micro, draft = cuts
    await review(kelian, micro["id"], "submit", "publish", reviewer=REVIEWER)
    student = kelian.token("ann", "student")

    page = await new_page(browser, locale="zh-CN", label="student")
    mp4_answers: list[int] = []
    page.on("response", lambda r: mp4_answers.append(r.status) if "/lesson.mp4" in r.url else None)
    await page.goto(link(kelian, student))
    await expect(page).to_have_title("课联空中课堂资源库")
    await expect(page.locator("body")).to_have_attribute("data-view", "browse")
    await expect(page.locator("body")).to_have_attribute("data-layout", "desktop")
    tiles = page.locator(".lib-tile")
    # newest first: the micro-lesson, then its lesson; the draft is not listed, nor served to a student
    await expect(tiles).to_have_count(2)
    assert await tiles.evaluate_all("(els) => els.map((el) => el.dataset.id)") == [micro["id"], lesson["id"]]
    await expect(page.locator(f'[data-id="{draft["id"]}"]')).to_have_count(0)
    assert (await fetch(kelian, f"/library/{draft['id']}/lesson.mp4?token={student}"))[0] == 404
    first = page.locator(f'.lib-tile[data-id="{lesson["id"]}"]')
    await expect(first.locator(".lib-title")).to_have_text("分数的意义")
    await expect(first.locator(".lib-meta")).to_have_text("数学 · 五年级")
    await expect(first.locator(".lib-teacher")).to_have_text("王老师")
    await expect(first.locator(".lib-duration")).to_have_text(duration(lesson["duration"]))
    await expect(first.locator(".lib-status")).to_have_count(0)  # published: no badge
    await expect(page.locator(f'.lib-tile[data-id="{micro["id"]}"] .lib-badge')).to_have_text("微课")
    await poster_shown(page, lesson["id"])
    await expect(page.locator("#browse-count")).to_have_text("共 2 节课")

    # words of the title and tags, stage, grade and subject: the server's search, asked by the page
    for action, value, count in (
        ("q", "geometry", 0),
        ("q", "分数", 1),
        ("q", "", 2),
        ("stage", "senior", 0),
        ("stage", "primary", 2),
        ("grade", "5", 2),
        ("subject", "physics", 0),
        ("subject", "maths", 2),
    ):
        if action == "q":
            await page.locator("#q").fill(value)
        else:
            await page.locator(f"#{action}").select_option(value)
        await expect(tiles).to_have_count(count)
        await expect(page.locator("#grid-empty")).to_be_visible(visible=count == 0)
    await expect(page.locator("#grid-empty")).to_be_hidden()
    await pictures(page, "library-student")

    # play the lesson: the MP4, asked for by byte range, and its clock goes forward
    await first.click()
    await expect(page.locator("body")).to_have_attribute("data-view", "player")
    await expect(page.locator("#player-title")).to_have_text("分数的意义")
    await expect(page.locator("#player-meta")).to_contain_text("数学 · 五年级 · 小学 · 王老师")
    video = page.locator("#video")
    await expect(video).to_have_attribute("data-source", "mp4")
    await expect(video).to_have_attribute("data-preferred", "mp4")
    await plays(page)
    assert 206 in mp4_answers, f"no range request answered with 206: {mp4_answers}"
    hls_link = await page.locator("#tv-link").input_value()
    assert hls_link == f"{kelian.url}/library/{lesson['id']}/hls/index.m3u8?token={student}"
    await pictures(page, "library-player")

    # HLS in the page: Chromium plays it natively.
    assert await page.evaluate(
        "() => document.createElement('video').canPlayType('application/vnd.apple.mpegurl')"
    )

    await page.locator("#source-hls").click()
    await expect(video).to_have_attribute("data-source", "hls")
    await plays(page)
    await expect(video).not_to_have_attribute("data-fallback", "hls")
    assert await video.evaluate("(v) => v.currentSrc.includes('/hls/index.m3u8?token=')")

    # back to the grid (the phone's back button too: a history entry), the tile focused again
    await page.go_back()
    await expect(page.locator("body")).to_have_attribute("data-view", "browse")
    await expect(first).to_be_focused()
    assert await video.evaluate("(v) => v.paused && !v.getAttribute('src')")

    # a teacher's link: the draft too, marked so
    teacher = await new_page(browser, locale="en-US", label="teacher")
    await teacher.goto(link(kelian, kelian.token("wang", "lecturer")))
    await expect(teacher.locator(".lib-tile")).to_have_count(3)
    marked = teacher.locator(f'.lib-tile[data-id="{draft["id"]}"]')
    await expect(marked).to_have_attribute("data-status", "draft")
    await expect(marked.locator(".lib-status")).to_have_text("Draft")
    await expect(teacher.locator("#who")).to_have_text("Teacher: drafts shown too")

    # a phone: one lesson a row across the screen, nothing wider than it, large enough to tap
    phone = await new_page(browser, locale="zh-CN", label="phone", viewport=PHONE)
    await phone.goto(link(kelian, student))
    await expect(phone.locator("body")).to_have_attribute("data-layout", "phone")
    await expect(phone.locator(".lib-tile")).to_have_count(2)
    assert await phone.evaluate("() => document.documentElement.scrollWidth <= innerWidth")
    for box in [await t.bounding_box() for t in await phone.locator(".lib-tile").all()]:
        assert box and box["width"] >= PHONE["width"] - 24 and box["height"] >= 48, box
    await phone.locator(f'.lib-tile[data-id="{lesson["id"]}"]').click()
    await expect(phone.locator("body")).to_have_attribute("data-view", "player")
    await plays(phone)
    player = await phone.locator("#video").bounding_box()
    assert player and player["width"] >= PHONE["width"] - 1, player
    await expect(phone.locator("#layout-toggle")).to_be_hidden()

    # a TV: focus starts on the first tile; the remote's arrows move it, Enter plays, Back returns
    tv = await new_page(browser, locale="zh-CN", label="tv", viewport=TV)
    await tv.goto(link(kelian, student, layout="tv"))
    await expect(tv.locator("body")).to_have_attribute("data-layout", "tv")
    one, two = (
        tv.locator(f'.lib-tile[data-id="{micro["id"]}"]'),
        tv.locator(f'.lib-tile[data-id="{lesson["id"]}"]'),
    )
    await expect(one).to_be_focused()
    await tv.keyboard.press("ArrowRight")
    await expect(two).to_be_focused()
    await tv.keyboard.press("ArrowLeft")
    await expect(one).to_be_focused()
    await tv.keyboard.press("ArrowUp")
    await expect(tv.locator("#q")).to_be_focused()
    await tv.keyboard.press("ArrowDown")
    await expect(one).to_be_focused()
    await tv.keyboard.press("ArrowRight")
    box = await two.bounding_box()
    assert box and box["width"] >= 340, "TV tiles are large"
    await poster_shown(tv, lesson["id"])
    await pictures(tv, "library-tv")
    await tv.keyboard.press("Enter")
    await expect(tv.locator("body")).to_have_attribute("data-view", "player")
    await expect(tv.locator("#player-title")).to_have_text("分数的意义")
    # a TV takes HLS where it plays it; whichever plays (the MP4 if HLS failed), the remote can watch
    await expect(tv.locator("#video")).to_have_attribute("data-preferred", "hls")
    await expect(tv.locator("#video")).to_be_focused()
    await plays(tv)
    await tv.keyboard.press("Escape")
    await expect(tv.locator("body")).to_have_attribute("data-view", "browse")
    await expect(two).to_be_focused()


async def test_a_bad_link_and_an_empty_library_say_so(kelian: Server, browser: Browser) -> None:
    """No recording needed: a token that does not verify gets a message a person can act on (and
    leaves the address bar), a good one on an empty library says there is nothing yet."""
    page = await new_page(browser, locale="en-US", label="bad-link")
    await page.goto(link(kelian, "not-a-token"))
    error = page.locator("#error")
    await expect(error).to_have_attribute("data-code", "unauthorized")
    await expect(error).to_contain_text("This library link is not valid or has expired")
    await expect(page.locator("body")).to_have_attribute("data-view", "start")
    assert "token=" not in page.url
    await page.locator("#token").fill(kelian.token("ann", "student"))
    await page.locator("#open").click()
    await expect(page.locator("body")).to_have_attribute("data-view", "browse")
    await expect(page.locator("#grid-empty")).to_have_text("Nothing in the library yet.")
    await expect(page.locator(".lib-tile")).to_have_count(0)


async def test_the_hls_link_for_tvs_plays_natively(
    recorded_board: tuple[Server, str], browser: Browser
) -> None:
    """What a set-top box does with the link the page gives it: a bare <video> with the HLS link."""
    kelian, recording = recorded_board
    lesson = await filed(kelian, recording)
    await review(kelian, lesson["id"], "submit", "publish", reviewer=REVIEWER)
    page = await new_page(browser, label="tv-link")
    segments: list[int] = []
    page.on("response", lambda r: segments.append(r.status) if SEGMENT.search(r.url) else None)
    await page.goto(link(kelian, kelian.token("tv", "viewer")))
    await page.locator(f'.lib-tile[data-id="{lesson["id"]}"]').click()
    hls_link = await page.locator("#tv-link").input_value()
    await page.evaluate(
        """(src) => { const v = document.createElement("video"); v.id = "box"; v.muted = true;
                      document.body.append(v); v.src = src; v.play().catch(() => {}); }""",
        hls_link,
    )
    await page.wait_for_function(
        "() => { const v = document.getElementById('box'); return v.error || v.currentTime > 0; }"
    )
    assert segments and all(status in (200, 206) for status in segments), f"segments answered {segments}"
    await plays(page, "#box")


# -- reviewers ------------------------------------------------------------------------------------------


async def sign_in(page: Page) -> None:
    await page.locator("#api-key").fill(API_KEY)
    await page.locator("#api-secret").fill(API_SECRET)
    await page.locator("#reviewer").fill(REVIEWER)
    await page.locator("#signin").click()
    await expect(page.locator("body")).to_have_attribute("data-view", "review")


async def step(page: Page, action: str, reason: str | None = None) -> None:
    """A review step from the editor, through its confirmation."""
    await page.locator(f'#steps button[data-action="{action}"]').click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_be_visible()
    if reason is not None:
        await page.locator("#confirm-go").click()  # no reason yet: refused in the dialog
        await expect(page.locator("#confirm-error")).to_contain_text("Say why it is rejected")
        await page.locator("#confirm-reason").fill(reason)
    await page.locator("#confirm-go").click()
    await expect(dialog).to_be_hidden()


async def item(kelian: Server, item_id: str) -> dict[str, Any]:
    status, body = await api(kelian, "GET", f"/library/{item_id}")
    assert status == 200, body
    return dict(body)


async def test_a_reviewer_files_reviews_and_cuts_through_the_page(
    recorded_board: tuple[Server, str], browser: Browser
) -> None:
    kelian, recording = recorded_board
    second = await filed(kelian, recording, title="分数的意义·二")
    page = await new_page(browser, locale="en-US", label="reviewer")
    await page.goto(kelian.url + "/library")
    await expect(page.locator("body")).to_have_attribute("data-view", "start")
    await sign_in(page)
    await expect(page.locator("#who")).to_have_text(f"Reviewer: {REVIEWER}")
    kept = await page.evaluate("() => [JSON.stringify(localStorage), JSON.stringify(sessionStorage)]")
    assert API_SECRET not in kept[0] and API_SECRET in kept[1], "the secret is kept for this tab only"
    await expect(page.locator('.lib-tab[aria-selected="true"]')).to_have_attribute("data-status", "draft")
    await expect(page.locator(f'.lib-row[data-id="{second["id"]}"]')).to_be_visible()

    # file the recording: shown at once, finishing, with its progress bar (the progress reads are
    # held back until the test has seen it), then a draft
    release = asyncio.Event()

    async def hold(route: Route, request: Request) -> None:
        if request.method == "GET":
            await release.wait()
        await route.fallback()

    await page.route("**/api/v1/library**", hold)
    await page.locator("#file-open").click()
    await expect(page.locator("#file-dialog")).to_be_visible()
    await page.locator("#file-recording").fill(recording)
    await page.locator("#file-title-input").fill(CATALOGUE["title"])
    await page.locator("#file-stage").select_option("primary")
    await page.locator("#file-grade").select_option("5")
    await page.locator("#file-subject").select_option("maths")
    await page.locator("#file-teacher").fill("王老师")
    await page.locator("#file-date").fill("2026-09-01")
    await page.locator("#file-tags").fill("fractions, 分数")
    await page.locator("#file-go").click()
    await expect(page.locator("#file-dialog")).to_be_hidden()
    await expect(page.locator('.lib-tab[aria-selected="true"]')).to_have_attribute("data-status", "finishing")
    finishing = page.locator('.lib-row[data-status="finishing"]')
    await expect(finishing).to_have_count(1)
    await expect(finishing.locator("progress")).to_be_visible()
    await expect(finishing.locator(".lib-progress-text")).to_have_text("0%")
    new_id = await finishing.get_attribute("data-id")
    assert new_id is not None and new_id != second["id"]
    release.set()
    await page.unroute("**/api/v1/library**")
    # the finishing job ends within a minute (tests/library_lessons.finished), then the page sees it
    filed_item = await item(kelian, new_id)
    assert filed_item["recording"] == recording and filed_item["tags"] == ["fractions", "分数"]
    await expect(finishing).to_have_count(0, timeout=60_000)
    await page.locator('.lib-tab[data-status="draft"]').click()
    row = page.locator(f'.lib-row[data-id="{new_id}"]')
    await expect(row).to_have_attribute("data-status", "draft")
    await expect(row.locator(".lib-meta")).to_contain_text("Maths · Grade 5 · 王老师")

    # the catalogue, edited
    await row.locator(".lib-row-main").click()
    editor = page.locator("#editor")
    await expect(editor).to_have_attribute("data-id", new_id)
    await expect(page.locator("#edit-title")).to_have_value(CATALOGUE["title"])
    await page.locator("#edit-school").fill("第一小学")
    await page.locator("#save").click()
    await expect(page.locator("#saved")).to_have_text("Saved.")
    assert (await item(kelian, new_id))["school"] == "第一小学"

    # submit, then publish: each after its confirmation, the reviewer named
    await step(page, "submit")
    await expect(editor).to_have_attribute("data-status", "in_review")
    await expect(page.locator('.lib-tab[aria-selected="true"]')).to_have_attribute("data-status", "in_review")
    await page.locator('#steps button[data-action="publish"]').click()
    await expect(page.locator("#confirm-title")).to_have_text(f"Publish “{CATALOGUE['title']}”?")
    await expect(page.locator("#confirm-reviewer")).to_have_value(REVIEWER)
    await page.locator("#confirm-cancel").click()  # cancelled: nothing happens
    assert (await item(kelian, new_id))["status"] == "in_review"
    await step(page, "publish")
    await expect(editor).to_have_attribute("data-status", "published")
    published = await item(kelian, new_id)
    assert (published["status"], published["reviewer"]) == ("published", REVIEWER)
    listed = await fetch(
        kelian, "/library/items", {"Authorization": "Bearer " + kelian.token("ann", "student")}
    )
    assert new_id in listed[2].decode()

    # the other one: submitted, then rejected with a reason the teacher reads
    await page.locator('.lib-tab[data-status="draft"]').click()
    await page.locator(f'.lib-row[data-id="{second["id"]}"] .lib-row-main').click()
    await step(page, "submit")
    await step(page, "reject", reason="2:10 处声音中断")
    await expect(editor).to_have_attribute("data-status", "rejected")
    rejected = page.locator(f'.lib-row[data-id="{second["id"]}"]')
    await expect(rejected.locator(".lib-reason")).to_have_text("Why: 2:10 处声音中断")
    assert (await item(kelian, second["id"]))["reason"] == "2:10 处声音中断"
    # mended and submitted again, then withdrawn to draft
    await step(page, "submit")
    await step(page, "withdraw")
    await expect(editor).to_have_attribute("data-status", "draft")
    assert (await item(kelian, second["id"]))["status"] == "draft"

    # a micro-lesson: start and end on the player's timeline, more than five minutes refused
    await page.locator('.lib-tab[data-status="published"]').click()
    await page.locator(f'.lib-row[data-id="{new_id}"] .lib-row-main').click()
    await expect(page.locator("#micro-form")).to_be_visible()
    player = "#review-video"
    await page.wait_for_function("(s) => document.querySelector(s).readyState >= 1", arg=player)
    await page.locator("#micro-start").fill("1.0")
    await page.locator("#micro-end").fill("4.0")
    await page.locator("#micro-title").fill("分数的读法")
    await expect(page.locator("#timeline-span")).to_be_visible()
    await page.evaluate("(s) => document.querySelector(s).play()", player)  # the reviewer's player plays
    await plays(page, player)
    await page.evaluate("(s) => document.querySelector(s).pause()", player)
    await pictures(page, "library-review", full_page=True)
    for field in ("#micro-start", "#micro-end"):
        await page.locator(field).fill("")
    await expect(page.locator("#timeline-span")).to_be_hidden()
    for at, mark, field in ((1.0, "#mark-start", "#micro-start"), (4.0, "#mark-end", "#micro-end")):
        await page.evaluate(
            """([s, at]) => new Promise((done) => { const v = document.querySelector(s);
                 v.addEventListener("seeked", done, { once: true }); v.currentTime = at; })""",
            [player, at],
        )
        await page.locator(mark).click()
        await expect(page.locator(field)).to_have_value(f"{at:.1f}")
    await expect(page.locator("#timeline-span")).to_be_visible()
    await expect(page.locator("#micro-length")).to_have_text("Length 0:03 of at most 5:00")

    await page.locator("#micro-end").fill("400")
    await page.locator("#micro-start").fill("0")
    await page.locator("#cut").click()
    await expect(page.locator("#micro-error")).to_have_text("A micro-lesson is at most 5:00.")
    await page.locator("#micro-start").fill("1")
    await page.locator("#micro-end").fill("4")
    await page.locator("#cut").click()
    await expect(editor).to_have_attribute("data-kind", "micro")
    await expect(editor).to_have_attribute("data-status", "draft")
    status, micros = await api(kelian, "GET", "/library?kind=micro")
    assert status == 200 and len(micros["items"]) == 1, micros
    (cut,) = micros["items"]
    assert (cut["lesson"], cut["title"], cut["status"]) == (new_id, "分数的读法", "draft")
    assert 1.0 - 2.05 <= cut["start"] <= 1.0 and cut["duration"] > 2.5, cut
    await expect(page.locator(f'.lib-row[data-id="{cut["id"]}"]')).to_have_attribute("data-kind", "micro")
