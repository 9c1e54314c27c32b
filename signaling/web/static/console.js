// The switchover console (/console): a school's or district's administrator sees the organisation
// (districts > schools > classrooms, each district's and school's mode, the lessons in session now)
// and switches a district, a school or one lesson between in person and online, after a
// confirmation that names the scope and what it covers. The answer (clients told, lessons, rooms
// opened, time taken) shows at once, and the audit log below is read again.
//
// It talks only to the admin API (api/v1, relative to the page, so a reverse proxy's prefix works),
// with HTTP Basic and the server's API key and secret. Those are the keys to every lesson, so they
// are kept in sessionStorage (this tab only, gone when it closes), never in localStorage or a cookie,
// and every request sets credentials: "omit", so that a wrong secret gets this page's message rather
// than the browser's own login prompt. "Lessons in session" are asked for at the server's clock (its
// Date header), not the tablet's, which may be minutes off.
//
// All text comes from i18n.js. Hooks for tests: body[data-view] is "login" or "console",
// body[data-busy] is set while a switch is under way, every district, school and lesson carries
// data-scope, data-id and data-mode (its own, or for a lesson the one it follows), each switch button
// data-to; #result[data-state] is "busy", "done" or "failed"; #error[data-code]; the audit rows carry
// data-number and data-switch.

import { adminCall, ApiError, signInForm, store, stored } from "./adminapi.js";
import {
  hideBanner,
  languageMenu,
  locale,
  setText,
  setTitle,
  showBanner,
  t,
} from "./i18n.js";

const $ = (id) => document.getElementById(id);

const ui = {
  lang: $("lang"),
  who: $("who"),
  signout: $("signout"),
  error: $("error"),
  errorText: $("error-text"),
  errorClose: $("error-close"),
  loginView: $("login-view"),
  loginForm: $("login-form"),
  key: $("api-key"),
  secret: $("api-secret"),
  by: $("by"),
  signin: $("signin"),
  checking: $("checking"),
  consoleView: $("console-view"),
  result: $("result"),
  resultText: $("result-text"),
  resultClose: $("result-close"),
  resultTold: $("result-told"),
  resultLessons: $("result-lessons"),
  resultRooms: $("result-rooms"),
  resultMs: $("result-ms"),
  filter: $("filter"),
  filterNone: $("filter-none"),
  updated: $("updated"),
  refresh: $("refresh"),
  treeLoading: $("tree-loading"),
  tree: $("tree"),
  treeEmpty: $("tree-empty"),
  auditBody: $("audit-body"),
  auditEmpty: $("audit-empty"),
  confirm: $("confirm"),
  confirmForm: $("confirm-form"),
  confirmTitle: $("confirm-title"),
  confirmLessons: $("confirm-lessons"),
  confirmConnected: $("confirm-connected"),
  confirmWhat: $("confirm-what"),
  confirmNote: $("confirm-note"),
  confirmBy: $("confirm-by"),
  confirmError: $("confirm-error"),
  confirmCancel: $("confirm-cancel"),
  confirmGo: $("confirm-go"),
  modeTemplate: $("mode-template"),
};

const STORE = { key: "kelian.console.key", secret: "kelian.console.secret", by: "kelian.console.by" };
const MODES = ["online", "offline"];
const REFRESH_MS = 30_000; // lessons begin and end, people join: the tree is read again this often
const PARALLEL = 6; // lesson lists asked for at once (one request per school)
const AUDIT_ROWS = 50;
const CLOCK_SKEW_S = 5; // below this, the server's Date header (whole seconds) is no better than ours
const SCOPE_LESSONS_SHOWN = 3; // a switch of many lessons names the first few in the audit log


const state = {
  credentials: null, // { key, secret } once the server accepted them
  org: null, // { districts, schools, classrooms, rooms, lessons: { school id: [lessons in session] } }
  orgJson: "",
  audits: [],
  updatedAt: 0,
  generation: 0, // the latest load started: an older one finishing later is dropped
  clockOffsetMs: 0,
  pending: null, // the switch the confirmation asks about
  switching: false,
  result: null, // { state, target, audit?, error? }: what #result shows
};

// -- the admin API ---------------------------------------------------------------------------------

function noteServerClock(response) {
  const date = Date.parse(response.headers.get("Date") || "");
  if (Number.isNaN(date)) return;
  const offset = date - Date.now();
  state.clockOffsetMs = Math.abs(offset) > CLOCK_SKEW_S * 1000 ? offset : 0;
}

function serverNow() {
  return (Date.now() + state.clockOffsetMs) / 1000;
}

function request(method, path, body) {
  return adminCall(state.credentials, method, path, body, noteServerClock);
}

/** Run `work` on every item, at most `limit` at once. */
async function each(items, limit, work) {
  const queue = [...items];
  const workers = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length) await work(queue.shift());
  });
  await Promise.all(workers);
}

async function loadOrg() {
  const at = Math.floor(serverNow());
  const [districts, schools, classrooms, rooms] = await Promise.all([
    request("GET", "districts"),
    request("GET", "schools"),
    request("GET", "classrooms"),
    request("GET", "rooms"),
  ]);
  const lessons = {};
  await each(schools.schools, PARALLEL, async (school) => {
    const query = `school=${encodeURIComponent(school.id)}&at=${at}`;
    lessons[school.id] = (await request("GET", `lessons?${query}`)).lessons;
  });
  return {
    districts: districts.districts,
    schools: schools.schools,
    classrooms: classrooms.classrooms,
    rooms: rooms.rooms.filter((room) => room.lesson),
    lessons,
  };
}

// -- errors ----------------------------------------------------------------------------------------

function showError(code, key, vars = {}) {
  showBanner(ui.error, ui.errorText, code, key, vars);
}

function clearError() {
  hideBanner(ui.error, ui.errorText);
}

/** Say what went wrong so that the person can act on it; a refused key or secret signs out. */
function handleError(err) {
  if (!(err instanceof ApiError)) {
    showError("error", "console.error.server", { message: String((err && err.message) || err) });
    return;
  }
  if (err.status === 401) {
    signOut();
    showError("unauthorized", "console.error.unauthorized");
    ui.secret.focus();
  } else if (err.code === "network") {
    showError("network", "console.error.network");
  } else if (err.status === 404) {
    showError(err.code, "console.error.not_found", { message: err.message }); // a switch reads the tree again
  } else if (err.status >= 500) {
    showError(err.code, "console.error.unavailable", { status: err.status, message: err.message });
  } else {
    showError(err.code, "console.error.server", { message: err.message });
  }
}

// -- formats ---------------------------------------------------------------------------------------

function number(value) {
  return new Intl.NumberFormat(locale()).format(value);
}

function clock(seconds) {
  return new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit" }).format(seconds * 1000);
}

function when(seconds) {
  return new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "medium" }).format(seconds * 1000);
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function translated(tag, className, key, vars) {
  const el = element(tag, className);
  setText(el, key, vars);
  return el;
}

function modeBadge(mode) {
  const badge = ui.modeTemplate.content.firstElementChild.cloneNode(true);
  badge.dataset.mode = mode;
  setText(badge.querySelector(".mode-text"), `console.mode.${mode}`);
  setTitle(badge, `console.mode.${mode}.title`);
  return badge;
}

// -- the organisation --------------------------------------------------------------------------------

function schoolsOf(district) {
  return state.org.schools.filter((school) => school.district === district.id);
}

function lessonsOf(school) {
  return state.org.lessons[school.id] || [];
}

function connected(rooms) {
  return rooms.reduce((sum, room) => sum + room.participants, 0);
}

/** What a switch of `kind` `id` covers: the lessons in session, the people in its lessons' rooms
 * (the rooms the server tells: those of the lessons listed, or of the schools, open or in their
 * grace time after the lesson), and every mode in it now. */
function coverage(kind, record) {
  const { rooms } = state.org;
  if (kind === "lesson") {
    const school = state.org.schools.find((s) => s.id === record.school);
    return {
      lessons: 1,
      people: connected(rooms.filter((room) => room.lesson === record.id)),
      modes: new Set([record.mode || (school && school.mode) || "offline"]),
    };
  }
  const schools = kind === "district" ? schoolsOf(record) : [record];
  const ids = new Set(schools.map((s) => s.id));
  const modes = new Set([record.mode]);
  let lessons = 0;
  for (const school of schools) {
    modes.add(school.mode);
    for (const lesson of lessonsOf(school)) {
      modes.add(lesson.mode || school.mode);
      lessons += 1;
    }
  }
  return { lessons, people: connected(rooms.filter((room) => ids.has(room.school))), modes };
}

function switchButtons(kind, record, name) {
  const actions = element("div", "scope-actions");
  const { modes, lessons, people } = coverage(kind, record);
  for (const to of MODES) {
    // offered unless all of the scope is `to` already; a mixed scope offers both
    if (modes.size === 1 && modes.has(to)) continue;
    const button = translated("button", `switch to-${to}`, `console.switch.${to}`);
    button.type = "button";
    button.dataset.to = to;
    button.disabled = state.switching;
    button.addEventListener("click", () => askSwitch({ kind, id: record.id, name, to, lessons, people }));
    actions.append(button);
  }
  return actions;
}

function figure(key, vars) {
  return translated("span", "figure-chip", key, vars);
}

function renderLesson(school, lesson) {
  const classroomNames = new Map(state.org.classrooms.map((c) => [c.id, c.name || c.id]));
  const mode = lesson.mode || school.mode;
  const item = element("li", "lesson");
  Object.assign(item.dataset, { scope: "lesson", id: lesson.id, mode });

  const main = element("div", "lesson-main");
  const head = element("div", "lesson-head");
  head.append(element("span", "lesson-title", lesson.title || lesson.id));
  head.append(translated("span", "tag", `console.kind.${lesson.room_kind}`));
  head.append(
    translated("span", "lesson-time", "console.lesson.time", {
      start: clock(lesson.starts_at),
      end: clock(lesson.ends_at),
    })
  );
  main.append(head);
  const rooms = lesson.classrooms.map((id) => classroomNames.get(id) || id);
  if (rooms.length) main.append(element("div", "lesson-classrooms", rooms.join(" · ")));

  const side = element("div", "lesson-side");
  side.append(modeBadge(mode));
  side.append(translated("span", lesson.mode ? "own own-set" : "own", lesson.mode ? "console.lesson.own" : "console.lesson.follows"));
  const people = connected(state.org.rooms.filter((room) => room.lesson === lesson.id));
  side.append(translated("span", "connected", "console.count.connected", { count: number(people) }));
  side.append(switchButtons("lesson", lesson, lesson.title || lesson.id));
  item.append(main, side);
  return item;
}

function scopeHead(kind, record, name, figures) {
  const head = element("header", "scope-head");
  const title = element("div", "scope-title");
  title.append(translated("span", "scope-kind", `console.${kind}`));
  title.append(element(kind === "district" ? "h2" : "h3", "scope-name", name));
  title.append(modeBadge(record.mode));
  const numbers = element("div", "scope-figures");
  numbers.append(...figures);
  head.append(title, numbers, switchButtons(kind, record, name));
  return head;
}

function renderSchool(school) {
  const card = element("article", "school");
  Object.assign(card.dataset, { scope: "school", id: school.id, mode: school.mode });
  const lessons = lessonsOf(school);
  const { people } = coverage("school", school);
  card.append(
    scopeHead("school", school, school.name || school.id, [
      figure("console.count.in_session", { count: number(lessons.length) }),
      figure("console.count.connected", { count: number(people) }),
    ])
  );

  const classrooms = state.org.classrooms.filter((c) => c.school === school.id);
  const rooms = element("div", "school-part");
  rooms.append(translated("h4", "part-title", "console.classrooms"));
  if (classrooms.length) {
    const list = element("ul", "classroom-list");
    for (const classroom of classrooms) {
      const chip = element("li", "classroom-chip", classroom.name || classroom.id);
      chip.dataset.id = classroom.id;
      if (classroom.box) chip.title = classroom.box;
      list.append(chip);
    }
    rooms.append(list);
  } else {
    rooms.append(translated("p", "empty", "console.no_classrooms"));
  }

  const session = element("div", "school-part");
  session.append(translated("h4", "part-title", "console.in_session"));
  if (lessons.length) {
    const list = element("ul", "lesson-list");
    list.append(...lessons.map((lesson) => renderLesson(school, lesson)));
    session.append(list);
  } else {
    session.append(translated("p", "empty", "console.no_lessons"));
  }
  card.append(rooms, session);
  return card;
}

function renderDistrict(district) {
  const section = element("section", "district");
  Object.assign(section.dataset, { scope: "district", id: district.id, mode: district.mode });
  const schools = schoolsOf(district);
  const { lessons, people } = coverage("district", district);
  const online = schools.filter((s) => s.mode === "online").length;
  section.append(
    scopeHead("district", district, district.name || district.id, [
      figure("console.count.schools_online", { online: number(online), count: number(schools.length) }),
      figure("console.count.in_session", { count: number(lessons) }),
      figure("console.count.connected", { count: number(people) }),
    ])
  );
  const list = element("div", "school-grid");
  list.append(...schools.map(renderSchool));
  if (!schools.length) list.append(translated("p", "empty", "console.no_schools"));
  section.append(list);
  return section;
}

/** The switch button of `scopeElement` itself (not of a scope inside it) that goes `to`. */
function ownSwitch(scopeElement, to) {
  const buttons = scopeElement.querySelectorAll(`button.switch[data-to="${to}"]`);
  return [...buttons].find((button) => button.closest("[data-scope]") === scopeElement) || null;
}

function renderTree() {
  if (!state.org) {
    ui.tree.replaceChildren();
    ui.treeEmpty.hidden = true;
    return;
  }
  // a keyboard user on a switch stays on it when the tree is drawn again
  const active = document.activeElement;
  const owner = active && active.matches("button.switch") ? active.closest("[data-scope]") : null;
  const focused = owner && { ...owner.dataset, to: active.dataset.to };
  ui.tree.replaceChildren(...state.org.districts.map(renderDistrict));
  ui.treeEmpty.hidden = state.org.districts.length > 0;
  applyFilter();
  if (focused) {
    const selector = `[data-scope="${focused.scope}"][data-id="${CSS.escape(focused.id)}"]`;
    const again = ui.tree.querySelector(selector);
    const button = again && (ownSwitch(again, focused.to) || again.querySelector("button.switch"));
    if (button) button.focus();
  }
}

/** Show the schools whose name or id (or whose district's) holds the text typed, and their districts. */
function applyFilter() {
  const text = ui.filter.value.trim().toLowerCase();
  const matches = (...values) => values.some((v) => String(v || "").toLowerCase().includes(text));
  let shown = 0;
  for (const section of ui.tree.querySelectorAll(".district")) {
    const district = state.org.districts.find((d) => d.id === section.dataset.id);
    const whole = !text || matches(district.id, district.name);
    let any = false;
    for (const card of section.querySelectorAll(".school")) {
      const school = state.org.schools.find((s) => s.id === card.dataset.id);
      card.hidden = !(whole || matches(school.id, school.name));
      any ||= !card.hidden;
    }
    section.hidden = !(whole || any);
    if (!section.hidden) shown += 1;
  }
  ui.filterNone.hidden = !text || shown > 0;
  if (!ui.filterNone.hidden) setText(ui.filterNone, "console.filter.none", { text: ui.filter.value.trim() });
}

// -- the audit log -----------------------------------------------------------------------------------

function nameOf(kind, id) {
  const list = state.org ? state.org[`${kind}s`] : [];
  const found = list.find((record) => record.id === id);
  return (found && found.name) || id;
}

function lessonTitle(id) {
  for (const lessons of Object.values(state.org ? state.org.lessons : {})) {
    const found = lessons.find((lesson) => lesson.id === id);
    if (found) return found.title || id;
  }
  return id;
}

function auditScope(scope) {
  if (scope.district) return t("console.audit.scope.district", { name: nameOf("district", scope.district) });
  if (scope.school) return t("console.audit.scope.school", { name: nameOf("school", scope.school) });
  const ids = scope.lessons || [];
  const names = ids.slice(0, SCOPE_LESSONS_SHOWN).map(lessonTitle);
  if (ids.length > SCOPE_LESSONS_SHOWN) names.push(`+${ids.length - SCOPE_LESSONS_SHOWN}`);
  const key = ids.length === 1 ? "console.audit.scope.lesson" : "console.audit.scope.lessons";
  return t(key, { name: names.join(", ") });
}

function renderAudit() {
  const rows = state.audits.map((audit) => {
    const row = element("tr");
    row.dataset.number = audit.number;
    row.dataset.switch = audit.switch;
    row.dataset.mode = audit.mode;
    const modeCell = element("td");
    modeCell.append(modeBadge(audit.mode));
    row.append(
      element("td", "number", String(audit.number)),
      element("td", "at", when(audit.at)),
      element("td", "by", audit.by || "—"),
      element("td", "scope", auditScope(audit.scope)),
      modeCell,
      element("td", "number", number(audit.schools)),
      element("td", "number", number(audit.lessons_in_session)),
      element("td", "number", number(audit.rooms_opened)),
      element("td", "number told", number(audit.clients_told)),
      element("td", "number", t("console.result.ms", { ms: number(audit.told_ms) }))
    );
    return row;
  });
  ui.auditBody.replaceChildren(...rows);
  ui.auditEmpty.hidden = rows.length > 0;
}

// -- reading it all --------------------------------------------------------------------------------

function renderUpdated() {
  if (state.updatedAt) setText(ui.updated, "console.updated", { time: when(state.updatedAt / 1000) });
}

/** Read the tree and the audit log again; redrawn only if something changed, so that a refresh
 * while the administrator reads or clicks moves nothing. */
async function refresh() {
  if (!state.credentials) return;
  const generation = ++state.generation;
  ui.treeLoading.hidden = state.org !== null;
  try {
    const [org, log] = await Promise.all([loadOrg(), request("GET", `switchovers?limit=${AUDIT_ROWS}`)]);
    if (generation !== state.generation || !state.credentials) return;
    const json = JSON.stringify(org);
    if (json !== state.orgJson) {
      state.org = org;
      state.orgJson = json;
      renderTree();
    }
    state.audits = log.switchovers;
    renderAudit();
    updatePending();
    state.updatedAt = Date.now();
    renderUpdated();
    if (ui.error.dataset.code === "network") clearError(); // reachable again
  } catch (err) {
    if (generation === state.generation) handleError(err);
  } finally {
    if (generation === state.generation) ui.treeLoading.hidden = true;
  }
}

// -- the switch --------------------------------------------------------------------------------------

function scopeLabel(target) {
  return t(`console.scope.${target.kind}`, { name: target.name });
}

function setBusy(busy) {
  state.switching = busy;
  if (busy) document.body.dataset.busy = "true";
  else delete document.body.dataset.busy;
  for (const button of ui.tree.querySelectorAll("button.switch")) button.disabled = busy;
}

function fillConfirm() {
  const target = state.pending;
  if (!target) return;
  const scope = scopeLabel(target);
  setText(ui.confirmTitle, `console.confirm.${target.to}`, { scope });
  setText(ui.confirmLessons, "console.confirm.in_session", { count: number(target.lessons) });
  setText(ui.confirmConnected, "console.confirm.connected", { count: number(target.people) });
  setText(ui.confirmWhat, `console.confirm.what.${target.to}`);
  ui.confirmNote.hidden = target.kind === "lesson";
  if (target.kind !== "lesson") setText(ui.confirmNote, `console.confirm.${target.kind}`);
  setText(ui.confirmGo, `console.switch.${target.to}`);
  ui.confirm.dataset.to = target.to;
  ui.confirm.dataset.targetKind = target.kind;
  ui.confirm.dataset.targetId = target.id;
}

/** The confirmation's figures from the tree just read (people join and leave while it is open). */
function updatePending() {
  const target = state.pending;
  if (!target || !state.org) return;
  const kinds = { district: "districts", school: "schools" };
  const list = kinds[target.kind]
    ? state.org[kinds[target.kind]]
    : Object.values(state.org.lessons).flat();
  const record = list.find((r) => r.id === target.id);
  if (!record) return; // deleted meanwhile: the switch will say so
  Object.assign(target, coverage(target.kind, record));
  fillConfirm();
}

function askSwitch(target) {
  if (state.switching) return;
  state.pending = target;
  fillConfirm();
  refresh(); // the people connected now, not at the last read
  ui.confirmBy.value = stored(STORE.by) || ui.by.value.trim();
  ui.confirmError.hidden = true;
  ui.confirm.showModal();
  // Not the switch button: a stray Enter must not switch a school. The name first if it is missing.
  (ui.confirmBy.value ? ui.confirmCancel : ui.confirmBy).focus();
}

function closeConfirm() {
  state.pending = null;
  if (ui.confirm.open) ui.confirm.close();
}

async function confirmed(event) {
  event.preventDefault();
  const target = state.pending;
  const by = ui.confirmBy.value.trim();
  if (!target) return;
  if (!by) {
    setText(ui.confirmError, "console.error.need_by");
    ui.confirmError.hidden = false;
    ui.confirmBy.focus();
    return;
  }
  store(STORE.by, by);
  ui.by.value = by;
  showWho();
  closeConfirm();
  await runSwitch(target, by);
}

async function runSwitch(target, by) {
  const body = { mode: target.to, by };
  if (target.kind === "lesson") body.lessons = [target.id];
  else body[target.kind] = target.id;
  clearError();
  setBusy(true);
  state.result = { state: "busy", target };
  renderResult();
  try {
    const audit = await request("POST", "switchover", body);
    state.result = { state: "done", target, audit };
  } catch (err) {
    state.result = { state: "failed", target, error: err };
    handleError(err);
  } finally {
    setBusy(false);
    renderResult();
  }
  await refresh(); // the modes just written, the new audit row
}

function renderResult() {
  const result = state.result;
  ui.result.hidden = !result || !state.credentials;
  if (!result) return;
  const { target, audit } = result;
  ui.result.dataset.state = result.state;
  ui.result.dataset.mode = target.to;
  const scope = scopeLabel(target);
  const figures = [ui.resultTold, ui.resultLessons, ui.resultRooms, ui.resultMs];
  if (result.state === "done") {
    setText(ui.resultText, `console.result.${audit.mode}`, { scope });
    ui.resultTold.textContent = number(audit.clients_told);
    ui.resultLessons.textContent = number(audit.lessons_in_session);
    ui.resultRooms.textContent = number(audit.rooms_opened);
    setText(ui.resultMs, "console.result.ms", { ms: number(audit.told_ms) });
    return;
  }
  for (const dd of figures) {
    delete dd.dataset.i18n;
    dd.textContent = "–";
  }
  setText(ui.resultText, `console.result.${result.state}`, { scope }); // failed: #error says why
}

// -- signing in and out ------------------------------------------------------------------------------

function setView(view) {
  document.body.dataset.view = view;
  ui.loginView.hidden = view !== "login";
  ui.consoleView.hidden = view !== "console";
  ui.signout.hidden = view !== "console";
  showWho();
}

function showWho() {
  const by = stored(STORE.by);
  ui.who.hidden = document.body.dataset.view !== "console" || !by;
  if (by) setText(ui.who, "console.signed_in", { name: by });
}

async function signIn(event) {
  event.preventDefault();
  clearError();
  const signed = await signInForm({
    key: ui.key,
    secret: ui.secret,
    name: ui.by,
    nameError: ["need_by", "console.error.need_by"],
    button: ui.signin,
    busy: ui.checking,
    showError,
    handleError: (err) => {
      state.credentials = null;
      handleError(err);
    },
    check: (credentials) => {
      state.credentials = credentials;
      return request("GET", "districts"); // the cheapest call that needs the key and secret
    },
  });
  if (!signed) return;
  const { key, secret } = signed.credentials;
  const by = signed.name;
  store(STORE.key, key);
  store(STORE.secret, secret);
  store(STORE.by, by);
  ui.secret.value = "";
  setView("console");
  await refresh();
}

function signOut() {
  state.credentials = null;
  state.generation += 1; // a load under way is dropped
  state.org = null;
  state.orgJson = "";
  state.audits = [];
  state.result = null;
  store(STORE.key, "");
  store(STORE.secret, "");
  closeConfirm();
  renderTree();
  renderAudit();
  renderResult();
  setView("login");
}

// -- start -------------------------------------------------------------------------------------------

function rerender() {
  // dates and numbers are written in the reader's format: drawn again in the new language
  if (state.org) renderTree();
  renderAudit();
  renderUpdated();
  renderResult();
  fillConfirm();
}

function start() {
  languageMenu(ui.lang, rerender);

  ui.loginForm.addEventListener("submit", signIn);
  ui.errorClose.addEventListener("click", clearError);
  ui.signout.addEventListener("click", () => {
    clearError();
    signOut();
    ui.key.focus();
  });
  ui.refresh.addEventListener("click", () => refresh());
  ui.filter.addEventListener("input", () => state.org && applyFilter());
  ui.resultClose.addEventListener("click", () => {
    state.result = null;
    renderResult();
  });
  ui.confirmForm.addEventListener("submit", confirmed);
  ui.confirmCancel.addEventListener("click", closeConfirm);
  ui.confirm.addEventListener("close", () => {
    state.pending = null;
  });

  setInterval(() => {
    if (state.credentials && !state.switching && document.visibilityState === "visible") {
      refresh();
    }
  }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.credentials) refresh();
  });

  ui.by.value = stored(STORE.by);
  const key = stored(STORE.key);
  const secret = stored(STORE.secret);
  if (key && secret) {
    // a reload of a signed-in tab: straight to the console (a refused secret comes back here)
    ui.key.value = key;
    state.credentials = { key, secret };
    setView("console");
    refresh();
  } else {
    setView("login");
    (ui.key.value ? ui.secret : ui.key).focus();
  }
}

start();
