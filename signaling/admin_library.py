"""The library over HTTP: the admin API's catalogue, review and micro-lesson routes, and playback.

The admin API (HTTP Basic) is the school's system and its reviewers: it files recordings, edits
the catalogue, passes or refuses items and cuts micro-lessons. Playback (``/library/...``) is for
people: a join token of this server (``Authorization: Bearer``, or ``?token=`` for a video element
or a TV that cannot set headers) lets a student or viewer see and play published items, a teacher
every item; the MP4 is served with HTTP range requests, HLS as its playlist and segments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import hdrs, web

from classroom import text
from classroom.errors import ClassroomError
from classroom.tokens import Role, TokenError, verify
from library.library import Library, NotFound
from library.model import Item, ItemError
from library.store import FILTERS

from . import appkeys
from .admin import PREFIX, authenticate, endpoint, invalid, json_body

LIBRARY = PREFIX + "/library"
PUBLISHED_ONLY = frozenset({Role.STUDENT, Role.VIEWER})
MAX_PAGE = 200
MAX_REASON = 1000  # characters of a rejection's reason


def _library(request: web.Request) -> Library:
    return request.app[appkeys.LIBRARY]


@contextlib.contextmanager
def _refusals(item_error: str = "invalid_request") -> Iterator[None]:
    """The library's refusals in the API's terms: an item or field it cannot take (`item_error`:
    for a review, a step its state does not allow), and an item or recording that is not there."""
    try:
        yield
    except ItemError as exc:
        raise ClassroomError(item_error, str(exc)) from None
    except NotFound as exc:
        raise ClassroomError("not_found", str(exc)) from None


async def _item(request: web.Request) -> Item:
    with _refusals():
        return await _library(request).get(request.match_info["item"])


def _page(request: web.Request) -> tuple[dict[str, str], str | None, int, int]:
    query = request.rel_url.query
    filters = {key: query[key] for key in FILTERS if key in query}
    try:
        limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
    except ValueError:
        raise invalid("limit and offset are whole numbers") from None
    if not (1 <= limit <= MAX_PAGE and offset >= 0):
        raise invalid(f"limit is 1 to {MAX_PAGE}, offset 0 or more")
    return filters, query.get("q"), limit, offset


@endpoint
async def search(request: web.Request) -> web.Response:
    """Items by catalogue field (status, kind, stage, grade, subject, teacher, school, date) and words
    (``q``) of their title and tags; newest first."""
    filters, words, limit, offset = _page(request)
    items = await _library(request).store.search(filters, words, limit, offset)
    return web.json_response({"items": [i.to_dict() for i in items]})


@endpoint
async def add_lesson(request: web.Request) -> web.Response:
    """File a recording: the finishing job starts (follow its ``progress``); the item is a draft when
    it is done."""
    body = await json_body(request)
    recording = body.pop("recording", None)
    with _refusals():
        item = await _library(request).add_lesson(recording, body)
    return web.json_response(item.to_dict(), status=202)


@endpoint
async def get_item(request: web.Request) -> web.Response:
    return web.json_response((await _item(request)).to_dict())


@endpoint
async def edit_item(request: web.Request) -> web.Response:
    body = await json_body(request)
    with _refusals():
        item = await _library(request).edit(request.match_info["item"], body)
    return web.json_response(item.to_dict())


@endpoint
async def review_item(request: web.Request) -> web.Response:
    """``{"action": "submit" | "publish" | "reject" | "withdraw", "reviewer": ..., "reason": ...}``."""
    body = await json_body(request)
    unknown = sorted(set(body) - {"action", "reviewer", "reason"})
    if unknown:
        raise invalid(f"unknown field {unknown[0]!r}; expected action, reviewer, reason")
    try:  # the review's own rules come after: these are only what a name and a reason may be
        if body.get("reviewer") is not None:
            text.display_name(body["reviewer"], "reviewer")
        if body.get("reason") is not None:
            text.free_text(body["reason"], "reason", MAX_REASON)
    except text.TextError as exc:
        raise invalid(str(exc)) from None
    with _refusals("illegal_step"):
        item = await _library(request).review(
            request.match_info["item"], body.get("action"), body.get("reviewer"), body.get("reason")
        )
    return web.json_response(item.to_dict())


@endpoint
async def add_micro(request: web.Request) -> web.Response:
    """A micro-lesson from ``start`` to ``end`` seconds of a lesson (``exact``: re-encoded)."""
    body = await json_body(request)
    start, end, exact = body.pop("start", None), body.pop("end", None), body.pop("exact", False)
    with _refusals():
        item = await _library(request).add_micro(request.match_info["item"], start, end, exact, body)
    return web.json_response(item.to_dict(), status=201)


# -- for people: the items they may see, and playback ----------------------------------------------


def _viewer(request: web.Request) -> Role | None:
    """The role of whoever asks (None: the admin API's credentials); "unauthorized" otherwise."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    if header.lower().startswith("basic "):
        authenticate(request)
        return None
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.rel_url.query.get("token")
    if not token:
        raise ClassroomError("unauthorized", "a join token of this server, as Bearer or ?token=")
    config = request.app[appkeys.CONFIG]
    try:
        claims = verify(token, config.api_key, config.api_secret, max_ttl=config.max_token_ttl)
    except TokenError as exc:
        raise ClassroomError("unauthorized", exc.message) from None
    return claims.role


def _may_see(role: Role | None, item: Item) -> bool:
    return item.visible_to_everyone() or (role not in PUBLISHED_ONLY and item.status != "finishing")


async def browse(request: web.Request) -> web.Response:
    """The items the asker may see: published ones for students and viewers."""
    try:
        role = _viewer(request)
        filters, words, limit, offset = _page(request)
    except ClassroomError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)
    if role in PUBLISHED_ONLY:
        filters["status"] = "published"
    finished = role not in PUBLISHED_ONLY  # a teacher sees all but what is still being finished
    items = await _library(request).store.search(filters, words, limit, offset, finished=finished)
    return web.json_response({"items": [i.to_dict() for i in items if _may_see(role, i)]})


async def play(request: web.Request) -> web.StreamResponse:
    """An item's file: lesson.mp4 (with ranges), poster.jpg, hls/index.m3u8 and its segments."""
    try:
        role = _viewer(request)
        item = await _item(request)
    except ClassroomError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)
    path = _library(request).media(item, request.match_info["name"]) if _may_see(role, item) else None
    if path is None:  # not there, or not for this viewer: the same answer, so nothing leaks
        return web.json_response({"error": {"code": "not_found", "message": "no such file"}}, status=404)
    headers = {"Cache-Control": "private, max-age=3600"}
    if path.suffix == ".m3u8":
        headers[hdrs.CONTENT_TYPE] = "application/vnd.apple.mpegurl"
        token = request.rel_url.query.get("token")
        if token:  # a TV cannot send a header: each segment's URL carries the token the playlist had
            lines = path.read_text().splitlines()
            signed = [
                f"{line}?{urlencode({'token': token})}" if line.endswith(".ts") else line for line in lines
            ]
            return web.Response(text="\n".join(signed) + "\n", headers=headers)
    elif path.suffix == ".ts":
        headers[hdrs.CONTENT_TYPE] = "video/mp2t"
    return web.FileResponse(path, headers=headers)


@endpoint
async def recordings(request: web.Request) -> web.Response:
    """The recordings on disk, newest first: what POST /api/v1/library files (its ``recording``), and
    whether an item was made of each already."""
    root = Path(request.app[appkeys.CONFIG].recordings)
    found = sorted(root.glob("*/*/*.json"), key=lambda p: p.parent.name, reverse=True)
    folders = dict.fromkeys(p.parent for p in found)
    filed = {i.recording for i in await _library(request).store.search({"kind": "lesson"}, limit=10_000)}
    listed = []
    for folder in list(folders)[:MAX_PAGE]:
        name = f"{folder.parent.name}/{folder.name}"
        tracks = sum(1 for _ in folder.glob("*.mkv"))
        listed.append(
            {"recording": name, "room": folder.parent.name, "tracks": tracks, "filed": name in filed}
        )
    return web.json_response({"recordings": listed})


def routes() -> list[web.RouteDef]:
    item = LIBRARY + "/{item}"
    return [
        web.get(PREFIX + "/recordings", recordings, allow_head=False),
        web.get(LIBRARY, search, allow_head=False),
        web.post(LIBRARY, add_lesson),
        web.get(item, get_item, allow_head=False),
        web.patch(item, edit_item),
        web.post(item + "/review", review_item),
        web.post(item + "/micro", add_micro),
        web.get("/library/items", browse, allow_head=False),
        web.get("/library/{item}/{name:.+}", play),
    ]
