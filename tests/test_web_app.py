"""The classroom page served at "/", in a real Chromium against a real server.

Join view (languages, errors a person can read, quick join), then two people in one lesson who see
and hear each other through the page, as a school's link would bring them in.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest
from browser import (
    difference,
    frames_decoded,
    is_not_black,
    new_page,
    save_screenshot_dir,
    screenshot,
    wait_frames_decoded,
)
from kelian_server import Server

from classroom.room import RoomOptions

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, WebSocketRoute

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips every test here, or fails them in CI
    expect = None  # type: ignore[assignment]

# getUserMedia failing as the browser fails it: NotAllowedError when the person (or a school policy)
# blocked the camera and microphone, NotFoundError when there is none.
REFUSE_MEDIA = """
Object.defineProperty(navigator.mediaDevices, "getUserMedia", {
    value: () => Promise.reject(new DOMException("refused by the test", "%s")),
});
"""


def link(kelian: Server, token: str, room: str = "lesson") -> str:
    """A link as a school system builds it."""
    return f"{kelian.url}/?{urlencode({'room': room, 'token': token})}"


QUALITY = re.compile(r"^(excellent|good|poor|lost)$")
PINNED = re.compile(r"\bpinned\b")


async def in_classroom(page: Page) -> None:
    await expect(page.locator("body")).to_have_attribute("data-view", "classroom")
    await page.wait_for_function("window.kelianRoom && window.kelianRoom.state === 'connected'")


async def error_shown(page: Page, code: str, text: str) -> None:
    error = page.locator("#error")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("data-code", code)
    await expect(error).to_have_attribute("role", "alert")
    await expect(error).to_contain_text(text)


# -- join view -------------------------------------------------------------------------------------------


async def test_join_page_in_english(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser, locale="en-US")
    await page.goto(kelian.url + "/")
    await expect(page.locator("#join-form")).to_be_visible()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#join")).to_have_text("Join")
    await expect(page.locator("label[for=token]")).to_have_text("Token")
    await expect(page.locator("#lang")).to_have_value("en")
    await expect(page.locator("#classroom")).to_be_hidden()
    await expect(page.locator("#error")).to_be_hidden()
    await expect(page.locator("#quick-join")).to_be_hidden()  # not a development server
    folder = save_screenshot_dir()
    if folder is not None:
        await page.locator("#room").fill("math-101")
        await page.locator("#name").fill("Li Lei")
        await page.screenshot(path=folder / "join.png")


async def test_join_page_in_chinese_and_the_switch_is_remembered(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser, locale="zh-CN")
    await page.goto(kelian.url + "/")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.locator("#join")).to_have_text("加入")
    await expect(page.locator("#lang")).to_have_value("zh")

    await page.locator("#lang").select_option("en")
    await expect(page.locator("#join")).to_have_text("Join")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#token")).to_have_attribute("placeholder", "Paste the token from your teacher")

    await page.reload()  # the choice wins over the browser's language from now on
    await expect(page.locator("#join")).to_have_text("Join")
    await page.locator("#lang").select_option("zh")
    await expect(page.locator("#join")).to_have_text("加入")
    await expect(page.locator("#token")).to_have_attribute("placeholder", "粘贴老师给你的令牌")


async def test_join_without_a_token_says_what_to_do(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser)
    await page.goto(kelian.url + "/")
    await page.locator("#join").click()
    await error_shown(page, "error.need_token", "Enter the token from your teacher")
    await expect(page.locator("body")).to_have_attribute("data-view", "join")


async def test_bad_and_expired_tokens_get_a_readable_error(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser)
    await page.goto(link(kelian, "not-a-token"))
    await error_shown(page, "unauthorized", "not valid or has expired")
    await expect(page.locator("#error")).to_contain_text("ask your teacher for a new one")
    await expect(page.locator("body")).to_have_attribute("data-view", "join")

    expired = kelian.token("late", now=time.time() - 7200)
    await page.locator("#token").fill(expired)
    await page.locator("#error-close").click()
    await expect(page.locator("#error")).to_be_hidden()
    await page.locator("#join").click()
    await error_shown(page, "unauthorized", "not valid or has expired")

    # the message follows the language switch
    await page.locator("#lang").select_option("zh")
    await expect(page.locator("#error")).to_contain_text("无效或已过期")


async def test_a_full_room_says_so(kelian: Server, browser: Browser) -> None:
    kelian.rooms.create("small", RoomOptions(max_participants=1))  # type: ignore[attr-defined]
    first = kelian.client("first", room="small")
    await first.connect()
    try:
        page = await new_page(browser)
        await page.goto(link(kelian, kelian.token("late", room="small"), room="small"))
        await error_shown(page, "room_full", "This classroom is full")
    finally:
        await first.close()


async def test_an_unreachable_server_is_a_network_error(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser)
    await page.goto(kelian.url + "/")
    await page.route_web_socket("**/ws", lambda ws: ws.close())  # as if the server had gone
    await page.locator("#token").fill(kelian.token("alice"))
    await page.locator("#join").click()
    await error_shown(page, "network", "Cannot reach the classroom server")
    await expect(page.locator("#join")).to_be_enabled()


@pytest.mark.parametrize(
    ("failure", "code", "text"),
    [
        ("NotAllowedError", "device_denied", "click the camera icon (or the lock) in the address bar"),
        ("NotFoundError", "device_missing", "No camera or microphone was found"),
    ],
)
async def test_without_camera_the_page_still_joins_and_says_why(
    kelian: Server, browser: Browser, failure: str, code: str, text: str
) -> None:
    page = await new_page(browser, init_script=REFUSE_MEDIA % failure)
    await page.goto(link(kelian, kelian.token("alice", name="Alice")))
    await in_classroom(page)
    await error_shown(page, code, text)
    await expect(page.locator("#toggle-camera")).to_have_attribute("data-state", "off")
    await expect(page.locator("#toggle-mic")).to_have_attribute("data-state", "off")
    await expect(page.locator("#leave")).to_be_visible()


async def test_quick_join_in_development_mode(kelian: Server, browser: Browser) -> None:
    kelian.config.dev_credentials = True  # the app reads it on each request
    page = await new_page(browser)
    await page.goto(kelian.url + "/")
    quick = page.locator("#quick-join")
    await expect(quick).to_be_visible()
    await page.locator("#room").fill("dev-lesson")
    await page.locator("#name").fill("Han Meimei")
    await quick.click()
    await in_classroom(page)
    await expect(page.locator("#room-label")).to_have_text("dev-lesson")
    await expect(page.locator("#local-tile .name")).to_have_text("Han Meimei")
    await expect(page.locator("#toggle-camera")).to_have_attribute("data-state", "on")
    # remembered for next time
    await page.locator("#leave").click()
    await expect(page.locator("body")).to_have_attribute("data-view", "join")
    await page.reload()
    await expect(page.locator("#room")).to_have_value("dev-lesson")
    await expect(page.locator("#name")).to_have_value("Han Meimei")


async def test_removed_by_the_teacher_and_room_closed(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser)
    await page.goto(link(kelian, kelian.token("alice", name="Alice")))
    await in_classroom(page)
    await kelian.rooms.rooms["lesson"].remove("alice")  # type: ignore[attr-defined]
    await error_shown(page, "removed", "The teacher removed you")
    await expect(page.locator("body")).to_have_attribute("data-view", "join")

    await page.locator("#join").click()  # the token is still in the form
    await in_classroom(page)
    await kelian.rooms.rooms["lesson"].close()  # type: ignore[attr-defined]
    await error_shown(page, "room_closed", "The class has ended")
    await expect(page.locator("body")).to_have_attribute("data-view", "join")


async def test_reconnecting_banner_and_lost_connection(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser)
    blocked = False
    sockets: list[WebSocketRoute] = []

    async def route(socket: WebSocketRoute) -> None:
        if blocked:
            await socket.close()  # the server cannot be reached for now
        else:
            socket.connect_to_server()
            sockets.append(socket)

    await page.route_web_socket("**/ws", route)
    await page.goto(link(kelian, kelian.token("alice", name="Alice")))
    await in_classroom(page)

    blocked = True
    await sockets[-1].close()  # the network drops
    banner = page.locator("#banner")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("Reconnecting")
    await expect(page.locator("body")).to_have_attribute("data-state", "reconnecting")
    await expect(page.locator("body")).to_have_attribute("data-view", "classroom")

    blocked = False  # back: the SDK resumes the session and the banner goes
    await expect(banner).to_be_hidden()
    await expect(page.locator("body")).to_have_attribute("data-state", "connected")
    await expect(page.locator("body")).to_have_attribute("data-view", "classroom")

    # When the SDK gives up (about half a minute of failed attempts) it reports "network"; rather than
    # wait that long, play its two last events.
    await page.evaluate(
        "() => { kelianRoom.emit('state', 'closed'); kelianRoom.emit('disconnected', 'network'); }"
    )
    await error_shown(page, "error.lost", "The connection to the classroom was lost")
    await expect(page.locator("body")).to_have_attribute("data-view", "join")
    await expect(banner).to_be_hidden()


async def test_tablet_layout_has_large_touch_targets(kelian: Server, browser: Browser) -> None:
    page = await new_page(browser, viewport={"width": 768, "height": 1024})
    await page.goto(link(kelian, kelian.token("alice", name="Alice")))
    await in_classroom(page)
    for control in ("#toggle-mic", "#toggle-camera", "#toggle-screen", "#leave"):
        box = await page.locator(control).bounding_box()
        assert box is not None and box["height"] >= 48 and box["width"] >= 48, (control, box)
    stage = await page.locator("#stage").bounding_box()
    grid = await page.locator("#grid").bounding_box()
    controls = await page.locator("#controls").bounding_box()
    assert stage and grid and controls
    # portrait: the large view on top, the participants under it, the controls at the bottom
    assert stage["y"] + stage["height"] <= grid["y"] + 1
    assert grid["y"] + grid["height"] <= controls["y"] + 1
    assert controls["y"] + controls["height"] <= 1024
    assert stage["width"] > 700


# -- two people in one lesson ----------------------------------------------------------------------------


async def test_two_pages_see_and_hear_each_other(kelian: Server, browser: Browser) -> None:
    alice = await new_page(browser, label="alice")
    bob = await new_page(browser, label="bob")
    await alice.goto(link(kelian, kelian.token("alice", "lecturer", name="Alice")))
    await in_classroom(alice)
    await bob.goto(link(kelian, kelian.token("bob", "classroom", name="Bob")))
    await in_classroom(bob)

    for page, other in ((alice, "bob"), (bob, "alice")):
        tile = page.locator(f'.tile[data-identity="{other}"]')
        await expect(tile).to_be_visible()
        await expect(tile).to_have_attribute("data-has-video", "true")
        await expect(page.locator("#toggle-camera")).to_have_attribute("data-state", "on")
        # the only other person is on the large view
        await expect(page.locator("#stage")).to_have_attribute("data-identity", other)
        # decoding, and the picture moves
        before = await wait_frames_decoded(page, 0)
        await wait_frames_decoded(page, before + 10)
        await page.wait_for_function(
            "(sel) => { const v = document.querySelector(sel); return v && v.videoWidth > 0; }",
            arg=f'.tile[data-identity="{other}"] video',
        )
        video = tile.locator("video")
        first = await screenshot(video)
        assert is_not_black(first), f"{other}'s tile is black"
        # a small tile of a small layer can look nearly the same half a second later (the fake
        # camera's pattern turns round): look a few times, each after 15 more decoded frames
        moved = 0.0
        for _ in range(6):
            await wait_frames_decoded(page, await frames_decoded(page) + 15)
            second = await screenshot(video)
            assert is_not_black(second)
            moved = difference(first, second)
            if moved > 1.0:
                break
        assert moved > 1.0, f"{other}'s picture does not move"
        # sound plays without a click (autoplay allowed by the page's <audio autoplay>)
        await page.wait_for_function(
            "(sel) => { const a = document.querySelector(sel); return a && !a.paused && a.srcObject; }",
            arg=f'.tile[data-identity="{other}"] audio',
        )
        await expect(tile.locator(".quality")).to_have_attribute("data-quality", QUALITY)

    folder = save_screenshot_dir()
    if folder is not None:
        await alice.screenshot(path=folder / "classroom.png")

    # Bob mutes himself: Alice sees the muted-mic icon on his tile
    await bob.locator("#toggle-mic").click()
    await expect(bob.locator("#toggle-mic")).to_have_attribute("data-state", "off")
    bob_on_alice = alice.locator('.tile[data-identity="bob"]')
    await expect(bob_on_alice).to_have_attribute("data-mic-muted", "true")
    await expect(bob_on_alice.locator(".muted-icon")).to_be_visible()
    await bob.locator("#toggle-mic").click()
    await expect(bob_on_alice).to_have_attribute("data-mic-muted", "false")
    await expect(bob_on_alice.locator(".muted-icon")).to_be_hidden()
    await expect(bob.locator("#notice")).to_be_hidden()

    # the teacher mutes Bob (as the admin API or a moderator would): Bob is told, both pages show it
    lesson = kelian.rooms.rooms["lesson"]  # type: ignore[attr-defined]
    microphone = next(p for p in lesson.producers("bob") if p.source == "microphone")
    await lesson.set_muted(microphone, True)
    await expect(bob.locator("#notice")).to_contain_text("The teacher turned off your microphone")
    await expect(bob.locator("#toggle-mic")).to_have_attribute("data-state", "off")
    await expect(bob_on_alice).to_have_attribute("data-mic-muted", "true")
    await bob.locator("#toggle-mic").click()
    await expect(bob.locator("#toggle-mic")).to_have_attribute("data-state", "on")
    await expect(bob_on_alice).to_have_attribute("data-mic-muted", "false")

    # a click pins a tile, a second click unpins it
    await bob_on_alice.click()
    await expect(bob_on_alice).to_have_class(PINNED)
    await bob_on_alice.click()
    await expect(bob_on_alice).not_to_have_class(PINNED)

    # Alice shares her screen: it takes Bob's large view; when she stops, her camera is back there
    await alice.locator("#toggle-screen").click()
    await expect(alice.locator("#toggle-screen")).to_have_attribute("data-state", "on")
    await expect(bob.locator("#stage")).to_have_attribute("data-source", "screen")
    await expect(bob.locator("#stage-label")).to_have_text("Alice — screen")
    await bob.wait_for_function("() => document.querySelector('#stage-video').videoWidth > 0")
    await alice.locator("#toggle-screen").click()
    await expect(alice.locator("#toggle-screen")).to_have_attribute("data-state", "off")
    await expect(bob.locator("#stage")).to_have_attribute("data-source", "camera")
    await expect(bob.locator("#stage-label")).to_have_text("Alice")

    # Bob leaves: his tile goes from Alice's page, he is back at the join view
    await bob.locator("#leave").click()
    await expect(bob.locator("body")).to_have_attribute("data-view", "join")
    await expect(bob.locator("#notice")).to_contain_text("You left the classroom")
    await expect(bob_on_alice).to_have_count(0)
    await expect(alice.locator("#stage-empty")).to_be_visible()
