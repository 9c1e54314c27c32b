"""The page of each role of a lesson (signaling/web: app.js, lesson.js), in a real Chromium against a
real server: the lecturer's stage and classroom grid, a tutor's classroom panel, a classroom box on a
TV, a live room's viewer and its waiting room.

Light Python peers (loadtest.peer) stand in for the other classrooms and students: they publish a
synthetic camera at no codec cost, so that two cores can run a lesson of several classrooms beside
the browser. Every wait is bounded. With KELIAN_SCREENSHOTS set, the tests also save each page, in
English and in Chinese, for the README (`make screenshots`).
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from browser import new_page, save_screenshot_dir
from classroom_peers import api, events, peers, room_of, token
from kelian_server import Server, eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, WebSocketRoute

    from loadtest.peer import Peer

try:
    from playwright.async_api import expect
except ImportError:  # the browser fixture skips every test here, or fails them in CI
    expect = None  # type: ignore[assignment]

TABLET = {"width": 768, "height": 1024}

# Video frames this page's browser has decoded of `identity`'s camera.
FRAMES_OF = """async (identity) => {
  const room = window.kelianRoom;
  const owner = room && [...room.participants.values()].find((p) => p.identity === identity);
  const info = owner && [...owner.tracks.values()].find((t) => t.kind === "video");
  if (!info || !info.track || !room.subscriberPc) return 0;
  let frames = 0;
  (await room.subscriberPc.getStats(info.track)).forEach((s) => {
    if (s.type === "inbound-rtp") frames += s.framesDecoded || 0;
  });
  return frames;
}"""

PLAYING = (
    "(selector) => { const v = document.querySelector(selector); return Boolean(v && v.videoWidth > 0); }"
)


def link(kelian: Server, jwt: str) -> str:
    """Every page here comes in as a school's link brings it: the page joins at once."""
    return f"{kelian.url}/?{urlencode({'room': 'lesson', 'token': jwt})}"


async def open_page(browser: Browser, kelian: Server, who: str, role: str, kind: str, **claims: Any) -> Page:
    page = await new_page(browser, label=who)
    await page.goto(link(kelian, token(kelian, who, role, kind, **claims)))
    return page


async def in_lesson(page: Page, layout: str) -> None:
    await expect(page.locator("body")).to_have_attribute("data-view", "classroom")
    await expect(page.locator("body")).to_have_attribute("data-page", layout)
    await page.wait_for_function("window.kelianRoom && window.kelianRoom.state === 'connected'")


async def wait_frames_of(page: Page, identity: str, above: int = 10) -> int:
    """Bounded (15 s): decoded frames show that the video really reaches the page, which a tile
    marked as having video does not."""
    frames = 0
    for _ in range(150):
        frames = int(await page.evaluate(FRAMES_OF, identity))
        if frames > above:
            break
        await asyncio.sleep(0.1)
    assert frames > above, f"{frames} frames of {identity} decoded, expected more than {above}"
    return frames


async def published(page: Page) -> None:
    """The page turned on what its role publishes by itself (the fake camera and microphone)."""
    await expect(page.locator("#toggle-camera")).to_have_attribute("data-state", "on")
    await expect(page.locator("#toggle-mic")).to_have_attribute("data-state", "on")


async def pictures(page: Page, name: str) -> None:
    """The README shows each page in both languages (docs/img/<name>-<lang>.png), so the same
    moment is taken twice; a notice, which fades by itself, is left out."""
    folder = save_screenshot_dir()
    if folder is None:
        return
    await page.evaluate("() => { document.getElementById('notice').hidden = true; }")  # a passing note
    for lang in ("en", "zh"):
        await page.evaluate(
            """async (lang) => {
                (await import("/static/i18n.js")).setLanguage(lang);
                document.getElementById("lang").value = lang;
                await document.fonts.ready;
            }""",
            lang,
        )
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if lang == "zh" else "en")
        await page.screenshot(path=folder / f"{name}-{lang}.png", animations="disabled")
    await page.evaluate(
        """async () => {
            (await import("/static/i18n.js")).setLanguage("en");
            document.getElementById("lang").value = "en";
        }"""
    )


async def event(
    peer: Peer, kind: str, where: Callable[[dict[str, Any]], bool] = lambda e: True, timeout: float = 10.0
) -> dict[str, Any]:
    """The latest event of `kind` that `where` accepts, waited for (bounded): a peer hears other
    events of the same kind meanwhile, and the one a page action causes may not have arrived yet."""

    def found() -> dict[str, Any] | None:
        return next((e for e in reversed(events(peer, kind)) if where(e)), None)

    assert await eventually(lambda: found() is not None, timeout=timeout), f"no such {kind} event"
    found_event = found()
    assert found_event is not None
    return found_event


# -- dual teacher: the lecturer's page, a classroom box, a tutor's panel ------------------------------------


async def test_the_lecturer_brings_a_classroom_on_stage_and_another_classroom_sees_it(
    kelian: Server, browser: Browser
) -> None:
    kind = "dual_teacher"
    people = [
        ("ann", "student", {"name": "Ann", "classroom": "box-1"}),
        ("bob", "student", {"name": "Bob", "classroom": "box-3"}),
        *((f"box-{n}", "classroom", {"name": f"Class {n}"}) for n in (1, 3, 4, 5, 6)),
    ]
    async with peers(kelian, *people, kind=kind) as (ann, bob, box1, *others):
        for box in (box1, *others):
            await box.publish()
        lecturer = await open_page(browser, kelian, "lecturer", "lecturer", kind, name="Ms Wang")
        await in_lesson(lecturer, "lecturer")
        await published(lecturer)
        box2 = await open_page(browser, kelian, "box-2", "classroom", kind, name="Class 2")
        await in_lesson(box2, "box")

        # the box: the lecturer edge to edge, no join form, no leave button, nobody else
        await expect(box2.locator("#stage")).to_have_attribute("data-identity", "lecturer")
        await box2.wait_for_function(PLAYING, arg="#stage-video")
        await expect(box2.locator("#leave")).to_be_hidden()
        await expect(box2.locator("#panel")).to_be_hidden()
        await expect(box2.locator('.tile[data-identity="box-1"]')).to_have_count(0)

        # the lecturer: every classroom in the grid (students only as hands), nobody on stage yet
        grid = lecturer.locator("#grid")
        for n in range(1, 7):
            tile = grid.locator(f'.tile[data-identity="box-{n}"]')
            await expect(tile).to_have_attribute("data-has-video", "true")
        await expect(grid.locator('.tile[data-identity="ann"]')).to_be_hidden()
        await expect(lecturer.locator("#onstage-empty")).to_be_visible()
        await wait_frames_of(lecturer, "box-3")

        # a student's hand, question and chat reach the lecturer's panel
        await ann.request({"type": "raise_hand"})
        await ann.request({"type": "ask", "text": "Why is the sky blue?"})
        await bob.request({"type": "chat", "text": "Good morning!"})
        await expect(lecturer.locator('#hands-list li[data-key="ann"]')).to_contain_text("Ann")
        await expect(lecturer.locator("#questions-list li")).to_contain_text("Why is the sky blue?")
        await expect(lecturer.locator("#chat-list")).to_contain_text("Good morning!")
        await lecturer.locator("#chat-text").fill("Open your books at page 12, please.")
        await lecturer.locator("#chat-send").click()
        chat = await event(box1, "chat", lambda e: e["message"]["from"]["identity"] == "lecturer")
        assert chat["message"]["text"] == "Open your books at page 12, please."

        # box-1 on stage: it leaves the grid for the stage row, and box-2's screen shows it
        await grid.locator('.tile[data-identity="box-1"] [data-action="stage"]').click()
        staged_here = lecturer.locator('#onstage-list .tile[data-identity="box-1"]')
        await expect(staged_here).to_be_visible()
        await expect(lecturer.locator("#onstage-empty")).to_be_hidden()
        staged_there = box2.locator('#stage-strip .tile[data-identity="box-1"]')
        await expect(staged_there).to_be_visible()
        await expect(staged_there).to_have_attribute("data-has-video", "true")
        await wait_frames_of(box2, "box-1")
        await box2.wait_for_function(PLAYING, arg='#stage-strip .tile[data-identity="box-1"] video')
        await expect(box2.locator("#stage")).to_have_attribute("data-identity", "lecturer")
        assert await box2.evaluate("window.kelianRoom.stage") == ["box-1"]

        await pictures(lecturer, "lecturer")
        await pictures(box2, "box")

        # the lock: everyone sees it, the lecturer opens it again
        await lecturer.locator("#lock").click()
        await expect(lecturer.locator("#lock")).to_have_attribute("data-state", "on")
        await expect(lecturer.locator("#locked-chip")).to_be_visible()
        assert (await event(ann, "room_locked"))["by"]["identity"] == "lecturer"
        await lecturer.locator("#lock").click()
        await expect(lecturer.locator("#locked-chip")).to_be_hidden()

        # mute all: every classroom's microphone, not the lecturer's own
        await lecturer.locator("#mute-all").click()
        await expect(lecturer.locator("#notice")).to_contain_text("6 microphones muted")
        for n in range(1, 7):
            tile = lecturer.locator(f'.tile[data-identity="box-{n}"]')
            await expect(tile).to_have_attribute("data-mic-muted", "true")
        await expect(box2.locator("#toggle-mic")).to_have_attribute("data-state", "off")
        await expect(lecturer.locator("#toggle-mic")).to_have_attribute("data-state", "on")

        # sent back: off box-2's screen, back in the lecturer's grid
        await staged_here.locator('[data-action="send_back"]').click()
        await expect(staged_there).to_have_count(0)
        await expect(grid.locator('.tile[data-identity="box-1"] [data-action="stage"]')).to_be_visible()
        assert await box2.evaluate("window.kelianRoom.stage") == []

        # a tablet in portrait: the stage row, the classrooms, the panel and the controls, in that order
        await lecturer.set_viewport_size(TABLET)
        boxes = [
            await lecturer.locator(part).bounding_box()
            for part in ("#onstage", "#grid", "#panel", "#controls")
        ]
        assert all(boxes), boxes
        for upper, lower in itertools.pairwise(boxes):
            assert upper and lower and upper["y"] + upper["height"] <= lower["y"] + 1, (upper, lower)
        assert boxes[-1] and boxes[-1]["y"] + boxes[-1]["height"] <= TABLET["height"]
        for control in ("#lock", "#mute-all", "#leave"):
            box = await lecturer.locator(control).bounding_box()
            assert box is not None and box["height"] >= 48 and box["width"] >= 48, (control, box)


async def test_the_tutor_panel_keeps_to_its_own_classroom(kelian: Server, browser: Browser) -> None:
    kind = "dual_teacher"
    people = [
        ("lecturer", "lecturer", {"name": "Ms Wang"}),
        ("box-1", "classroom", {"name": "Class 1"}),
        ("ann", "student", {"name": "Ann", "classroom": "box-1"}),
        ("bob", "student", {"name": "Bob", "classroom": "box-2"}),
    ]
    async with peers(kelian, *people, kind=kind) as (lecturer, box1, ann, bob):
        await lecturer.publish()
        await box1.publish()
        tutor = await open_page(browser, kelian, "tutor-1", "tutor", kind, name="Mr Li", classroom="box-1")
        await in_lesson(tutor, "tutor")
        # the lecture on the large view, its own classroom's box below it
        await expect(tutor.locator("#stage")).to_have_attribute("data-identity", "lecturer")
        await tutor.wait_for_function(PLAYING, arg="#stage-video")
        box_tile = tutor.locator('#grid .tile[data-identity="box-1"]')
        await expect(box_tile).to_have_attribute("data-has-video", "true")
        await expect(tutor.locator("#lock")).to_be_hidden()  # the lecture's alone
        await expect(tutor.locator("#mute-all")).to_contain_text("Mute classroom")

        # hands: its classroom's only (bob's comes first, yet never shows)
        await bob.request({"type": "raise_hand"})
        await ann.request({"type": "raise_hand"})
        hands = tutor.locator("#hands-list li")
        await expect(hands).to_have_count(1)
        await expect(hands).to_have_attribute("data-key", "ann")
        await expect(hands.locator('[data-action="stage"]')).to_have_count(0)  # a tutor invites to speak only

        # questions: one passed up to the lecturer, one answered here
        first = (await ann.request({"type": "ask", "text": "What is a prime?", "to": "tutor"}))["question"]
        item = tutor.locator(f'#questions-list li[data-key="{first["id"]}"]')
        await expect(item).to_have_attribute("data-to", "tutor")
        await item.locator('[data-action="forward"]').click()
        await expect(item).to_have_attribute("data-to", "lecturer")
        await expect(item.locator('[data-action="forward"]')).to_be_hidden()
        forwarded = await event(lecturer, "question", lambda e: e["question"]["id"] == first["id"])
        assert (
            forwarded["question"]["to"] == "lecturer" and forwarded["question"]["text"] == "What is a prime?"
        )
        second = (await ann.request({"type": "ask", "text": "Is 1 a prime?", "to": "tutor"}))["question"]
        await bob.request({"type": "ask", "text": "Not for this tutor", "to": "tutor"})

        # classroom chat both ways
        await ann.request({"type": "chat", "text": "Which page?", "to": "classroom"})
        await expect(tutor.locator("#chat-list")).to_contain_text("Which page?")
        await expect(tutor.locator("#chat-to")).to_have_value("classroom")
        await tutor.locator("#chat-text").fill("Page 12.")
        await tutor.locator("#chat-send").click()
        reply = await event(ann, "chat", lambda e: e["message"]["text"] == "Page 12.")
        assert reply["message"]["to"] == "classroom" and reply["message"]["from"]["identity"] == "tutor-1"
        await expect(tutor.locator("#questions-list li")).to_have_count(2)  # not bob's
        await pictures(tutor, "tutor")

        second_item = tutor.locator(f'#questions-list li[data-key="{second["id"]}"]')
        await second_item.locator('[data-action="answer"]').click()
        await second_item.locator(".answer-text").fill("No: a prime has exactly two divisors.")
        await second_item.locator(".answer-form button").click()
        await expect(second_item).to_have_attribute("data-status", "answered")
        answered = await event(
            ann,
            "question",
            lambda e: e["question"]["id"] == second["id"] and e["question"]["status"] == "answered",
        )
        assert answered["question"]["answer"] == "No: a prime has exactly two divisors."

        # the tutor mutes its classroom's box
        await box_tile.locator('[data-action="mute"]').click()
        await expect(box_tile).to_have_attribute("data-mic-muted", "true")
        (box_session,) = room_of(kelian).find("box-1")
        assert any(p.kind == "audio" and p.paused for p in box_session.producers.values())
        await expect(box_tile.locator('[data-action="unmute"]')).to_be_visible()


async def test_a_classroom_box_keeps_trying_and_never_shows_an_error(
    kelian: Server, browser: Browser
) -> None:
    kind = "dual_teacher"
    async with peers(kelian, ("lecturer", "lecturer", {"name": "Ms Wang"}), kind=kind) as (lecturer,):
        await lecturer.publish()
        page = await new_page(browser, label="box-2")
        blocked = True

        async def route(socket: WebSocketRoute) -> None:
            if blocked:
                await socket.close()  # the school's network is down
            else:
                socket.connect_to_server()

        await page.route_web_socket("**/ws", route)
        await page.goto(link(kelian, token(kelian, "box-2", "classroom", kind, name="Class 2")))
        # its lesson's screen from the start, saying it is trying again; never the join form or an error
        await expect(page.locator("body")).to_have_attribute("data-page", "box")
        await expect(page.locator("body")).to_have_attribute("data-retries", re.compile(r"^([2-9]|\d\d+)$"))
        await expect(page.locator("#box-status")).to_have_attribute("data-status", "box.retry")
        await expect(page.locator("#box-status")).to_contain_text("Trying again in")
        await expect(page.locator("#join-view")).to_be_hidden()
        await expect(page.locator("#error")).to_be_hidden()

        blocked = False  # the network is back: the next attempt joins
        await in_lesson(page, "box")
        await expect(page.locator("#box-status")).to_be_hidden()
        await expect(page.locator("#stage")).to_have_attribute("data-identity", "lecturer")
        await page.wait_for_function(PLAYING, arg="#stage-video")

        # the SDK gives up after half a minute of failed resumes (played here, as in test_web_app):
        # the box starts again by itself, with a fresh session
        first = await page.evaluate("window.kelianRoom.local.sid")
        await page.evaluate(
            "() => { kelianRoom.emit('state', 'closed'); kelianRoom.emit('disconnected', 'network'); }"
        )
        await expect(page.locator("#box-status")).to_be_visible()
        await page.wait_for_function(
            "(sid) => window.kelianRoom.local && window.kelianRoom.local.sid !== sid", arg=first
        )
        await in_lesson(page, "box")
        await expect(page.locator("#box-status")).to_be_hidden()
        await expect(page.locator("#error")).to_be_hidden()
        await page.wait_for_function(PLAYING, arg="#stage-video")

        # another screen opens the same classroom: this one stops (no tug of war) and says why
        other = await new_page(browser, label="box-2-again")
        await other.goto(link(kelian, token(kelian, "box-2", "classroom", kind, name="Class 2")))
        await in_lesson(other, "box")
        await expect(page.locator("#box-status")).to_have_attribute("data-status", "box.replaced")
        await expect(page.locator("#box-rejoin")).to_be_visible()
        await expect(page.locator("#error")).to_be_hidden()
        await expect(page.locator("body")).to_have_attribute("data-view", "classroom")


# -- live: a viewer's page and the presenter's -----------------------------------------------------------


async def test_a_live_viewer_chats_asks_and_raises_a_hand(kelian: Server, browser: Browser) -> None:
    kind = "live"
    status, _ = await api(kelian, "POST", "/rooms", {"name": "lesson", "kind": kind, "waiting_room": True})
    assert status == 201
    presenter = await open_page(browser, kelian, "lecturer", "lecturer", kind, name="Ms Wang")
    await in_lesson(presenter, "lecturer")
    await published(presenter)
    await expect(presenter.locator("#pane-waiting")).to_be_visible()

    # the viewer waits at the door until the presenter lets her in
    viewer = await open_page(browser, kelian, "vera", "viewer", kind, name="Vera")
    await expect(viewer.locator("body")).to_have_attribute("data-view", "waiting")
    await expect(viewer.locator("#waiting-position")).to_contain_text("number 1")
    await pictures(viewer, "waiting")
    waiting = presenter.locator('#waiting-list li[data-key="vera"]')
    await expect(waiting).to_contain_text("Vera")
    await waiting.get_by_role("button", name="Admit").click()
    await in_lesson(viewer, "viewer")
    await expect(presenter.locator("#waiting-list li")).to_have_count(0)

    # the presenter's picture, the count, no camera of her own yet
    await expect(viewer.locator("#stage")).to_have_attribute("data-identity", "lecturer")
    await viewer.wait_for_function(PLAYING, arg="#stage-video")
    await wait_frames_of(viewer, "lecturer")
    await expect(viewer.locator("#count")).to_have_attribute("data-count", "2")
    await expect(viewer.locator("#toggle-camera")).to_be_hidden()
    await expect(viewer.locator("#local-tile")).to_be_hidden()

    # chat, a question, a hand: the presenter's page shows all three
    await presenter.locator("#chat-text").fill("Welcome! Questions are open.")
    await presenter.locator("#chat-send").click()
    await expect(viewer.locator("#chat-list")).to_contain_text("Welcome! Questions are open.")
    await viewer.locator("#chat-text").fill("Hello from Vera!")
    await viewer.locator("#chat-send").click()
    await expect(presenter.locator("#chat-list")).to_contain_text("Hello from Vera!")
    await expect(viewer.locator("#chat-list li.mine")).to_contain_text("Hello from Vera!")
    await viewer.locator("#ask-text").fill("Will the slides be shared?")
    await viewer.locator("#ask-send").click()
    question = presenter.locator("#questions-list li")
    await expect(question).to_contain_text("Will the slides be shared?")
    await expect(question).to_contain_text("Vera")
    await expect(viewer.locator("#questions-list li")).to_have_attribute("data-status", "open")
    await viewer.locator("#raise-hand").click()
    await expect(viewer.locator("#raise-hand")).to_have_attribute("data-state", "on")
    hand = presenter.locator('#hands-list li[data-key="vera"]')
    await expect(hand).to_contain_text("Vera")

    # the presenter answers; the viewer sees the answer under her question
    await question.locator('[data-action="answer"]').click()
    await question.locator(".answer-text").fill("Yes, after the lesson.")
    await question.locator(".answer-form button").click()
    mine = viewer.locator("#questions-list li")
    await expect(mine).to_have_attribute("data-status", "answered")
    await expect(mine.locator(".answer")).to_contain_text("Yes, after the lesson.")
    await pictures(viewer, "viewer")

    # invited to speak, she declines: the presenter is told, her hand stays up
    await hand.get_by_role("button", name="Invite to speak").click()
    invitation = viewer.locator("#invitation")
    await expect(invitation).to_have_attribute("data-to", "speak")
    await expect(hand.locator(".item-status")).to_contain_text("Invited to speak")
    await viewer.locator("#invitation-decline").click()
    await expect(invitation).to_be_hidden()
    await expect(presenter.locator("#notice")).to_contain_text("Vera declined your invitation")
    await expect(hand.locator(".item-status")).to_be_hidden()
    await expect(viewer.locator("#toggle-camera")).to_be_hidden()

    # invited on stage, she accepts: she publishes, and the presenter's stage row shows her
    await hand.locator('[data-action="stage"]').click()
    await expect(invitation).to_be_visible()
    await expect(invitation).to_have_attribute("data-to", "stage")
    await expect(invitation).to_contain_text("Ms Wang invites you on stage")
    await viewer.locator("#invitation-accept").click()
    await expect(invitation).to_be_hidden()
    await published(viewer)
    await expect(viewer.locator("#raise-hand")).to_have_attribute("data-state", "off")
    on_stage = presenter.locator('#onstage-list .tile[data-identity="vera"]')
    await expect(on_stage).to_have_attribute("data-has-video", "true")
    await expect(presenter.locator("#hands-list li")).to_have_count(0)
    await wait_frames_of(presenter, "vera")

    # sent back: her camera and microphone stop, she watches again
    await on_stage.locator('[data-action="send_back"]').click()
    await expect(viewer.locator("#toggle-camera")).to_be_hidden()
    await expect(viewer.locator("#notice")).to_contain_text("The teacher ended your turn")
    await expect(on_stage).to_have_count(0)
    assert await viewer.evaluate("window.kelianRoom.localTracks.size") == 0
    (session,) = room_of(kelian).find("vera")
    assert not session.producers and not session.grants.publish

    # a tablet in portrait: the picture on top, chat and questions under it, large buttons
    await viewer.set_viewport_size(TABLET)
    stage = await viewer.locator("#stage").bounding_box()
    panel = await viewer.locator("#panel").bounding_box()
    controls = await viewer.locator("#controls").bounding_box()
    assert stage and panel and controls
    assert (
        stage["y"] + stage["height"] <= panel["y"] + 1 and panel["y"] + panel["height"] <= controls["y"] + 1
    )
    assert controls["y"] + controls["height"] <= TABLET["height"] and stage["width"] > 700
    for control in ("#raise-hand", "#leave", "#chat-send"):
        box = await viewer.locator(control).bounding_box()
        assert box is not None and box["height"] >= 40, (control, box)


async def test_a_viewer_turned_away_at_the_door_is_told_so(kelian: Server, browser: Browser) -> None:
    status, _ = await api(kelian, "POST", "/rooms", {"name": "lesson", "kind": "live", "waiting_room": True})
    assert status == 201
    async with peers(kelian, ("lecturer", "lecturer", {}), kind="live") as (lecturer,):
        viewer = await open_page(browser, kelian, "walt", "viewer", "live", name="Walt")
        await expect(viewer.locator("body")).to_have_attribute("data-view", "waiting")
        await event(lecturer, "waiting_list", lambda e: [w["identity"] for w in e["waiting"]] == ["walt"])
        await lecturer.request({"type": "deny", "identity": "walt"})
        await expect(viewer.locator("body")).to_have_attribute("data-view", "join")
        await expect(viewer.locator("#error")).to_have_attribute("data-code", "denied")
        await expect(viewer.locator("#error")).to_contain_text("did not let you in")

        # waiting again, then leaving by herself: the presenter's waiting room empties
        await viewer.locator("#join").click()
        await expect(viewer.locator("body")).to_have_attribute("data-view", "waiting")
        assert await eventually(lambda: bool(room_of(kelian).moderation.waiting))
        await viewer.locator("#waiting-leave").click()
        await expect(viewer.locator("body")).to_have_attribute("data-view", "join")
        assert await eventually(lambda: not room_of(kelian).moderation.waiting)


# -- fusion: the grid ---------------------------------------------------------------------------------------


async def test_the_fusion_grid_sends_small_tiles_small_layers(kelian: Server, browser: Browser) -> None:
    kind = "fusion"
    people = [
        ("school-a", "classroom", {"name": "School A"}),
        ("school-b", "classroom", {"name": "School B"}),
    ]
    async with peers(kelian, *people, kind=kind) as (school_a, school_b):
        await school_a.publish()
        await school_b.publish()
        page = await open_page(browser, kelian, "lecturer", "lecturer", kind, name="Ms Wang")
        await in_lesson(page, "grid")
        for school in ("school-a", "school-b"):
            tile = page.locator(f'#grid .tile[data-identity="{school}"]')
            await expect(tile).to_have_attribute("data-has-video", "true")
            await expect(tile.locator('[data-action="mute"]')).to_be_visible()
        await expect(page.locator('[data-action="stage"]')).to_have_count(0)  # everyone watches everyone

        # pinned: school-b on the large view gets a large layer, school-a's small tile a small one
        await page.locator('#grid .tile[data-identity="school-b"]').click()
        await expect(page.locator("#stage")).to_have_attribute("data-identity", "school-b")
        room = room_of(kelian)
        (viewer,) = room.find("lecturer")
        tracks = {
            who: next(p.id for p in room.find(who)[0].producers.values() if p.kind == "video")
            for who in ("school-a", "school-b")
        }

        def view_width(who: str) -> int:
            sub = next(s for s in viewer.subscriptions if s.producer_id == tracks[who] and s.consumer)
            return int(sub.consumer.max_width)  # type: ignore[union-attr]

        assert await eventually(lambda: view_width("school-b") > 2 * view_width("school-a") > 0, timeout=10)

        # the drawer: chat, with an unread count while it is closed
        await school_a.request({"type": "chat", "text": "Hello from School A"})
        await expect(page.locator("#panel-badge")).to_have_text("1")
        await page.locator("#toggle-panel").click()
        await expect(page.locator("#panel")).to_be_visible()
        await expect(page.locator("#chat-list")).to_contain_text("Hello from School A")
        await expect(page.locator("#panel-badge")).to_be_hidden()
