"""The admin API's organisation routes: districts, schools, classrooms, teachers, students and
lessons; bulk import; the emergency switchover and its audit; a lesson's join tokens.

A school's timetable system owns these records and sends them here by its own ids: PUT writes one
(created or replaced), POST /import writes many at once, all or nothing, with every bad row listed.
The work is in school/; this module parses, authenticates and formats.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from classroom import text
from classroom.errors import ClassroomError
from school import importer
from school.model import ORDER, Mode, Problem, RecordError, parse
from school.schools import NotFound, Schools, Scope
from school.store import BatchError, InUse

from . import appkeys
from .admin import PREFIX, endpoint, invalid, json_body, json_object, name_field

PLURALS = importer.PLURALS
KIND_OF = {plural: kind for kind, plural in PLURALS.items()}
MAX_IMPORT = 16 * 1024 * 1024  # bytes: a city district's roster as CSV


def _schools(request: web.Request) -> Schools:
    return request.app[appkeys.SCHOOLS]


def _kind(request: web.Request) -> str:
    return KIND_OF[request.match_info["kinds"]]


def _refused(problems: list[Problem], message: str) -> web.Response:
    body = {"code": "invalid_request", "message": message, "problems": [p.to_dict() for p in problems]}
    return web.json_response({"error": body}, status=400)


@endpoint
async def list_records(request: web.Request) -> web.Response:
    """Every record of a kind, or a parent's: ``?district=`` for schools, ``?school=`` for the rest;
    ``?at=<Unix seconds>`` with ``?school=`` for the lessons in session then."""
    kind, store = _kind(request), _schools(request).store
    parent = RECORD_PARENT.get(kind)
    query = request.rel_url.query
    at = query.get("at")
    try:
        moment = float(at) if at is not None else None
    except ValueError:
        raise invalid(f"at must be Unix seconds, got {at!r}") from None
    if parent and parent in query:
        records = await store.children(kind, name_field(query[parent], parent), moment)
    elif kind == "lesson" and "district" in query:  # a district's lessons: one console call, not one a school
        records = []
        for school in await store.children("school", name_field(query["district"], "district")):
            records += await store.children("lesson", school.id, moment)
    else:
        records = await store.all(kind)
    return web.json_response({PLURALS[kind]: [r.to_dict() for r in records]})


@endpoint
async def get_record(request: web.Request) -> web.Response:
    kind, record_id = _kind(request), request.match_info["id"]
    record = await _schools(request).store.get(kind, record_id)
    if record is None:
        raise ClassroomError("not_found", f"no {kind} {record_id!r}")
    return web.json_response(record.to_dict())


@endpoint
async def put_record(request: web.Request) -> web.Response:
    """Create or replace one record; its id is the path's."""
    kind, record_id = _kind(request), request.match_info["id"]
    body = await json_body(request)  # school.model.parse names any field it does not know
    if body.get("id", record_id) != record_id:
        raise invalid(f"the body's id {body['id']!r} is not the path's {record_id!r}")
    store = _schools(request).store
    try:
        record = parse(kind, body | {"id": record_id})
        existed = await store.get(kind, record_id) is not None
        await store.put([record])
    except RecordError as exc:
        raise invalid(str(exc)) from None
    except BatchError as exc:
        return _refused(exc.problems, exc.problems[0].error)
    return web.json_response(record.to_dict(), status=200 if existed else 201)


@endpoint
async def delete_record(request: web.Request) -> web.Response:
    kind, record_id = _kind(request), request.match_info["id"]
    try:
        deleted = await _schools(request).store.delete(kind, record_id)
    except InUse as exc:
        raise ClassroomError("in_use", str(exc)) from None
    if not deleted:
        raise ClassroomError("not_found", f"no {kind} {record_id!r}")
    return web.Response(status=204)


@endpoint
async def import_records(request: web.Request) -> web.Response:
    """JSON (lists by kind) or CSV (``?kind=lesson``, a header of field names): all rows or none."""
    if request.content_length is not None and request.content_length > MAX_IMPORT:
        raise ClassroomError("too_large", f"an import is at most {MAX_IMPORT} bytes")
    data = bytearray()  # read(n) gives what has arrived, up to n: a big roster comes in many pieces
    while chunk := await request.content.read(MAX_IMPORT + 1 - len(data)):
        data += chunk
        if len(data) > MAX_IMPORT:
            raise ClassroomError("too_large", f"an import is at most {MAX_IMPORT} bytes")
    if request.content_type == "text/csv":
        try:
            batch = importer.from_csv(request.rel_url.query.get("kind", ""), bytes(data).decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid("a CSV import must be UTF-8") from None
    else:
        try:
            batch = importer.from_json(text.parse_json(bytes(data)))
        except ValueError as exc:
            raise invalid(f"the body must be JSON or text/csv: {exc}") from None
    if batch.problems:
        return _refused(batch.problems, f"{len(batch.problems)} bad row(s): nothing was imported")
    try:
        await _schools(request).store.put(batch.records)
    except BatchError as exc:
        problems = batch.located(exc.problems)
        return _refused(problems, f"{len(problems)} bad row(s): nothing was imported")
    counts = {PLURALS[kind]: sum(1 for r in batch.records if r.kind == kind) for kind in ORDER}
    return web.json_response({"imported": {k: n for k, n in counts.items() if n}})


@endpoint
async def switchover(request: web.Request) -> web.Response:
    """Switch a district, a school or a list of lessons to ``online`` or ``offline`` at once."""
    body = await json_object(request, {"district", "school", "lessons", "mode", "by"}, required={"mode"})
    scopes = [key for key in ("district", "school", "lessons") if key in body]
    if len(scopes) != 1:
        raise invalid('name one scope: "district", "school" or "lessons"')
    try:
        mode = Mode(body["mode"])
    except ValueError:
        raise invalid(f'mode is "online" or "offline", got {body["mode"]!r}') from None
    by = body.get("by")
    if by is not None:
        try:
            by = text.display_name(by, "by")
        except text.TextError as exc:
            raise invalid(str(exc)) from None
    scope = _scope(scopes[0], body[scopes[0]])
    try:
        audit = await _schools(request).switch(scope, mode, by)
    except NotFound as exc:
        raise ClassroomError("not_found", str(exc)) from None
    return web.json_response(audit)


def _scope(key: str, value: Any) -> Scope:
    if key == "lessons":
        if not isinstance(value, list) or not value or len(value) > 10_000:
            raise invalid("lessons must be a non-empty list of lesson ids")
        return Scope(lessons=tuple(dict.fromkeys(name_field(v, "lesson") for v in value)))
    if key == "district":
        return Scope(district=name_field(value, key))
    return Scope(school=name_field(value, key))


@endpoint
async def switchovers(request: web.Request) -> web.Response:
    """The audit of the latest switchovers, newest first (``?limit=``, 100 by default)."""
    raw = request.rel_url.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise invalid(f"limit must be 1 to 10000, got {raw!r}")
    return web.json_response({"switchovers": await _schools(request).store.audits(int(raw))})


@endpoint
async def lesson_tokens(request: web.Request) -> web.Response:
    """A join token and link for everyone of a lesson: teacher, classroom boxes, students."""
    schools = _schools(request)
    try:
        roster = await schools.roster_tokens(
            request.match_info["id"], request.app[appkeys.CONFIG].max_token_ttl
        )
    except NotFound as exc:
        raise ClassroomError("not_found", str(exc)) from None
    room = quote(roster["room"], safe="")
    for entry in roster["tokens"]:
        entry["link"] = f"/?room={room}&token={entry['token']}"
    return web.json_response(roster, status=201)


RECORD_PARENT = {kind: parse_parent for kind, parse_parent in (
    ("school", "district"), ("classroom", "school"), ("teacher", "school"), ("student", "school"),
    ("lesson", "school"),
)}  # fmt: skip


def routes() -> list[web.RouteDef]:
    kinds = "{kinds:" + "|".join(PLURALS.values()) + "}"
    return [
        web.post(PREFIX + "/import", import_records),
        web.post(PREFIX + "/switchover", switchover),
        web.get(PREFIX + "/switchovers", switchovers, allow_head=False),
        web.post(PREFIX + "/lessons/{id}/tokens", lesson_tokens),
        web.get(PREFIX + "/" + kinds, list_records, allow_head=False),
        web.get(PREFIX + "/" + kinds + "/{id}", get_record, allow_head=False),
        web.put(PREFIX + "/" + kinds + "/{id}", put_record),
        web.delete(PREFIX + "/" + kinds + "/{id}", delete_record),
    ]
