// The air-classroom library (/library): recorded lessons and micro-lessons, browsed and played by
// students, teachers and classroom TVs, and reviewed by the school's reviewers.
//
// Two ways in. With a join token of this server in the link (/library?token=...), or pasted, the
// page lists what that token may see (GET library/items: published items for students and viewers,
// every finished item for teachers) as a grid of posters, searched by words and filtered by stage,
// grade and subject, and plays an item in an HTML5 <video>: the MP4 (the browser asks for byte
// ranges as it plays and seeks) or, where the browser plays HLS itself (canPlayType), the HLS
// playlist. Nothing here plays HLS in script: a browser without native HLS plays the MP4, and the
// player offers the HLS link for TVs and set-top boxes to open themselves. The token goes in the
// media URLs as ?token=, since a <video> cannot send an Authorization header. With &layout=tv the
// page is laid out for a TV and its remote: large tiles that take focus, arrow keys to move, Enter
// to play, Back (Escape or Backspace) to return; a narrow screen gets the phone layout by itself.
//
// A reviewer signs in with the server's API key and secret, as on the console: kept in
// sessionStorage only (this tab), every request with credentials: "omit". The reviewer sees items
// by status (finishing with its progress, draft, in review, published, rejected, failed), edits the
// catalogue, takes the review steps after a confirmation (a rejection with its reason), files a
// recording (its folder, <room>/<start time>) and cuts micro-lessons on the player's timeline. To
// play what it reviews, the page mints itself a short join token with the admin API (POST
// api/v1/tokens, a teacher's, which sees drafts).
//
// All text comes from i18n.js. Hooks for tests: body[data-view] (start, browse, player, review),
// body[data-layout] (desktop, phone, tv), body[data-mode] (token, review); every tile and row
// carries data-id, data-status and data-kind; #video[data-source] is "mp4" or "hls" and
// [data-preferred] what the page chose first; [data-fallback="hls"] when HLS failed and the MP4
// took over; #error[data-code].

import { adminCall, ApiError, call, signInForm, store, stored } from "./adminapi.js";
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

const ui = Object.fromEntries(
  [
    "lang", "who", "layout-toggle", "signout", "error", "error-text", "error-close", "notice", "notice-text",
    "start-view", "token-form", "token", "login-form", "api-key", "api-secret", "reviewer", "signin", "checking",
    "browse-view", "search-form", "q", "stage", "grade", "subject", "browse-loading", "browse-count", "grid",
    "grid-empty", "more",
    "player-view", "back", "player-title", "player-meta", "video", "source-mp4", "source-hls", "player-note",
    "tv-link-box", "tv-link", "copy-link",
    "review-view", "tabs", "review-q", "refresh", "file-open", "review-loading", "review-list", "review-empty",
    "editor", "editor-title", "editor-status", "editor-close", "editor-reason", "editor-facts", "review-video",
    "timeline", "timeline-span", "timeline-head", "steps",
    "edit-form", "edit-title", "edit-stage", "edit-grade", "edit-subject", "edit-teacher", "edit-school",
    "edit-date", "edit-tags", "save", "saved",
    "micro-form", "micro-start", "micro-end", "mark-start", "mark-end", "micro-title", "micro-length",
    "micro-error", "cut", "cutting",
    "confirm", "confirm-form", "confirm-title", "confirm-what", "confirm-reviewer-box", "confirm-reviewer",
    "confirm-reason-box", "confirm-reason", "confirm-error", "confirm-cancel", "confirm-go",
    "file-dialog", "file-form", "file-room", "file-find", "file-recording", "file-title-input", "file-stage",
    "file-grade", "file-subject", "file-teacher", "file-school", "file-date", "file-tags", "file-found",
    "file-error", "file-cancel", "file-go",
  ].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), $(id)])
);

const HLS_TYPE = "application/vnd.apple.mpegurl";
const STORE = {
  token: "kelian.library.token",
  key: "kelian.library.key",
  secret: "kelian.library.secret",
  reviewer: "kelian.library.reviewer",
};
// The catalogue's known values; an item may carry others (the API takes any text), shown as they are.
const STAGES = ["primary", "junior", "senior"];
const GRADES = {
  primary: ["1", "2", "3", "4", "5", "6"],
  junior: ["7", "8", "9"],
  senior: ["10", "11", "12"],
};
const ALL_GRADES = Object.values(GRADES).flat();
const SUBJECTS = [
  "chinese", "maths", "english", "physics", "chemistry", "biology", "history", "geography", "politics",
  "science", "music", "art", "pe", "it",
];
const STATUSES = ["finishing", "draft", "in_review", "published", "rejected", "failed"];
// The review's steps (library/model.py REVIEW): action -> the states it starts from.
const STEPS = {
  submit: ["draft", "rejected"],
  publish: ["in_review"],
  reject: ["in_review"],
  withdraw: ["published", "in_review"],
};
const MAX_MICRO = 300; // seconds: a micro-lesson is at most five minutes (library/model.py)
const PAGE = 24; // tiles asked for at once
const REVIEW_LIMIT = 200; // items per status in the reviewer's lists (the API's largest page)
const POLL_MS = 1000; // how often a finishing job's progress is read
const REFRESH_MS = 30_000; // the reviewer's lists otherwise
const SEEK_S = 10; // a remote's left and right in the player
const PLAY_TOKEN_TTL = 3600;
const PLAY_TOKEN_MARGIN_S = 120; // a new one this long before the old one expires


const state = {
  mode: null, // "token" (people with a join token) or "review"
  token: "",
  role: "", // the token's, read for display only (the server decides what it may see)
  forcedTv: false,
  items: [],
  offset: 0,
  generation: 0,
  playing: null, // the item in the player
  returnTo: null, // the tile to focus again when the player closes
  pushed: false, // the player added a history entry (the phone's back button closes it)
  credentials: null,
  reviewer: "",
  playToken: null, // { token, expiresAt } for the reviewer's player
  lists: {}, // status -> items
  tab: null,
  selected: null, // the item in the editor
  pending: null, // the review step the confirmation asks about
  reviewGeneration: 0,
  pollTimer: 0,
  refreshTimer: 0,
};

// -- requests --------------------------------------------------------------------------------------


/** What the join token may see: GET library/... with it as Bearer. */
function people(path) {
  return call(`library/${path}`, { headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" } });
}


/** The admin API with the reviewer's key and secret. */
function admin(method, path, body) {
  return adminCall(state.credentials, method, path, body);
}

/** An item's file (lesson.mp4, poster.jpg, hls/index.m3u8) with a token in its URL. */
function mediaUrl(item, name, token) {
  return `library/${encodeURIComponent(item.id)}/${name}?token=${encodeURIComponent(token)}`;
}

function absolute(url) {
  return new URL(url, location.href).href;
}

/** The token's claims, for display only (the server checks the signature). */
function claimsOf(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
    return JSON.parse(json) || {};
  } catch {
    return {};
  }
}

// -- messages --------------------------------------------------------------------------------------

function showError(code, key, vars = {}) {
  showBanner(ui.error, ui.errorText, code, key, vars);
}

function clearError() {
  hideBanner(ui.error, ui.errorText);
}

let noticeTimer = 0;

function showNotice(key, vars) {
  setText(ui.noticeText, key, vars);
  ui.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    ui.notice.hidden = true;
  }, 6000);
}

/** Say what went wrong so that the person can act on it. */
function handleError(err) {
  if (!(err instanceof ApiError)) {
    showError("error", "library.error.server", { message: String((err && err.message) || err) });
    return;
  }
  if (err.code === "network") {
    showError("network", "library.error.network");
  } else if (err.status === 401 && state.mode === "review") {
    signOut();
    showError("unauthorized", "console.error.unauthorized");
    ui.apiSecret.focus();
  } else if (err.status === 401) {
    leaveToken();
    showError("unauthorized", "library.error.token");
    ui.token.focus();
  } else if (err.status >= 500) {
    showError(err.code, "console.error.unavailable", { status: err.status, message: err.message });
  } else {
    showError(err.code, "library.error.server", { message: err.message });
  }
}

// -- formats ---------------------------------------------------------------------------------------

function duration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function day(date) {
  if (!date) return "";
  const parsed = Date.parse(`${date}T12:00:00`);
  if (Number.isNaN(parsed)) return date;
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium" }).format(parsed);
}

function when(seconds) {
  return new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "short" }).format(seconds * 1000);
}

function percent(value) {
  return new Intl.NumberFormat(locale(), { style: "percent" }).format(Math.max(0, Math.min(1, value || 0)));
}

/** The label of a catalogue value: known ones translated, others as they are. */
function stageName(stage) {
  return STAGES.includes(stage) ? t(`library.stage.${stage}`) : stage || "";
}

function gradeName(grade) {
  return ALL_GRADES.includes(String(grade)) ? t(`library.grade.${grade}`) : grade || "";
}

function subjectName(subject) {
  return SUBJECTS.includes(subject) ? t(`library.subject.${subject}`) : subject || "";
}

function metaLine(item) {
  return [subjectName(item.subject), gradeName(item.grade)].filter(Boolean).join(" · ");
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined && text !== null) el.textContent = text;
  return el;
}

function translated(tag, className, key, vars) {
  const el = element(tag, className);
  setText(el, key, vars);
  return el;
}

function statusBadge(status) {
  const badge = translated("span", "lib-status", `library.status.${status}`);
  badge.dataset.status = status;
  return badge;
}

/** <option>s for a catalogue select: "all" (or none) first, then the known values, then `extra`. */
function fillSelect(select, values, name, emptyKey, extra) {
  const keep = select.value;
  const options = [element("option", "", t(emptyKey))];
  options[0].value = "";
  const all = [...values];
  if (extra && !all.includes(extra)) all.push(extra);
  for (const value of all) {
    const option = element("option", "", name(value));
    option.value = value;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = all.includes(keep) ? keep : "";
}

function gradesFor(stage) {
  return GRADES[stage] || ALL_GRADES;
}

// -- layout ----------------------------------------------------------------------------------------

const phone = matchMedia("(max-width: 600px)");

function applyLayout() {
  const layout = state.forcedTv ? "tv" : phone.matches ? "phone" : "desktop";
  document.body.dataset.layout = layout;
  ui.layoutToggle.hidden = state.mode !== "token";
  setText(ui.layoutToggle, state.forcedTv ? "library.layout.normal" : "library.layout.tv");
}

function setTv(on) {
  state.forcedTv = on;
  const url = new URL(location.href);
  if (on) url.searchParams.set("layout", "tv");
  else url.searchParams.delete("layout");
  history.replaceState(history.state, "", url);
  applyLayout();
  if (on && document.body.dataset.view === "browse") focusFirstTile();
}

function setView(view) {
  document.body.dataset.view = view;
  ui.startView.hidden = view !== "start";
  ui.browseView.hidden = view !== "browse";
  ui.playerView.hidden = view !== "player";
  ui.reviewView.hidden = view !== "review";
  ui.signout.hidden = view === "start";
  setText(ui.signout, state.mode === "review" ? "library.signout" : "library.leave");
  applyLayout();
  showWho();
}

function showWho() {
  let key = null;
  let vars = {};
  if (state.mode === "review" && state.reviewer) {
    key = "library.who.reviewer";
    vars = { name: state.reviewer };
  } else if (state.mode === "token" && state.role) {
    key = `library.who.${isTeacher() ? "teacher" : "student"}`;
  }
  ui.who.hidden = !key;
  if (key) setText(ui.who, key, vars);
}

function isTeacher() {
  return state.role !== "" && state.role !== "student" && state.role !== "viewer";
}

// -- browsing (a join token) -------------------------------------------------------------------------

function enterToken(token) {
  state.mode = "token";
  state.token = token;
  state.role = String(claimsOf(token).role || "");
  document.body.dataset.mode = "token";
  store(STORE.token, token);
  renderFilters();
  setView("browse");
  loadItems(false);
}

function leaveToken() {
  closePlayer(true);
  state.mode = null;
  state.token = "";
  state.role = "";
  state.items = [];
  state.generation += 1;
  delete document.body.dataset.mode;
  store(STORE.token, "");
  ui.grid.replaceChildren();
  // a token in the address bar would open the library again on reload: it goes
  const url = new URL(location.href);
  url.searchParams.delete("token");
  history.replaceState(null, "", url);
  setView("start");
}

function renderFilters() {
  fillSelect(ui.stage, STAGES, stageName, "library.filter.all_stages");
  fillSelect(ui.grade, gradesFor(ui.stage.value), gradeName, "library.filter.all_grades");
  fillSelect(ui.subject, SUBJECTS, subjectName, "library.filter.all_subjects");
}

function query(offset) {
  const params = new URLSearchParams();
  const words = ui.q.value.trim();
  if (words) params.set("q", words);
  for (const [name, select] of [["stage", ui.stage], ["grade", ui.grade], ["subject", ui.subject]]) {
    if (select.value) params.set(name, select.value);
  }
  params.set("limit", String(PAGE));
  params.set("offset", String(offset));
  return params;
}

async function loadItems(append) {
  if (state.mode !== "token") return;
  const generation = ++state.generation;
  const offset = append ? state.offset : 0;
  ui.browseLoading.hidden = false;
  ui.more.disabled = true;
  try {
    const { items } = await people(`items?${query(offset)}`);
    if (generation !== state.generation) return;
    clearError();
    state.items = append ? [...state.items, ...items] : items;
    state.offset = offset + PAGE;
    ui.more.hidden = items.length < PAGE;
    renderGrid(append ? items : null);
  } catch (err) {
    if (generation === state.generation) handleError(err);
  } finally {
    if (generation === state.generation) {
      ui.browseLoading.hidden = true;
      ui.more.disabled = false;
    }
  }
}

function posterOf(item, token, className) {
  const frame = element("span", className);
  if (item.status !== "failed") {
    const img = element("img");
    img.alt = "";
    img.loading = "lazy";
    img.decoding = "async";
    img.src = mediaUrl(item, "poster.jpg", token);
    img.addEventListener("error", () => img.remove()); // no poster: the frame's own background
    frame.append(img);
  }
  return frame;
}

function tile(item) {
  const li = element("li");
  const button = element("button", "lib-tile");
  button.type = "button";
  Object.assign(button.dataset, { id: item.id, status: item.status, kind: item.kind });
  button.disabled = item.status === "failed";
  const poster = posterOf(item, state.token, "lib-poster");
  poster.append(element("span", "lib-duration", duration(item.duration)));
  if (item.kind === "micro") poster.append(translated("span", "lib-badge", "library.kind.micro"));
  if (item.status !== "published") poster.append(statusBadge(item.status)); // teachers see drafts too
  const text = element("span", "lib-tile-text");
  text.append(element("span", "lib-title", item.title));
  const meta = metaLine(item);
  text.append(element("span", "lib-meta", meta));
  text.append(element("span", "lib-teacher", item.teacher || ""));
  button.append(poster, text);
  button.addEventListener("click", () => openPlayer(item, button));
  li.append(button);
  return li;
}

function renderGrid(added) {
  if (added) ui.grid.append(...added.map(tile));
  else ui.grid.replaceChildren(...state.items.map(tile));
  const count = state.items.length;
  ui.gridEmpty.hidden = count > 0;
  const filtered = ui.q.value.trim() || ui.stage.value || ui.grade.value || ui.subject.value;
  if (!count) setText(ui.gridEmpty, filtered ? "library.empty.filtered" : "library.empty");
  setText(ui.browseCount, "library.count", { count: new Intl.NumberFormat(locale()).format(count) });
  if (!added && document.body.dataset.layout === "tv") focusFirstTile();
}

function focusFirstTile() {
  const active = document.activeElement;
  if (active && active !== document.body && ui.browseView.contains(active)) return;
  const first = ui.grid.querySelector(".lib-tile:not(:disabled)");
  if (first) first.focus();
}

/** How many tiles a row holds now (the grid reflows with the screen). */
function columns(tiles) {
  if (!tiles.length) return 1;
  const top = Math.round(tiles[0].getBoundingClientRect().top);
  const count = tiles.filter((el) => Math.round(el.getBoundingClientRect().top) === top).length;
  return Math.max(1, count);
}

/** Arrow keys move between tiles as they are laid out (a TV remote has nothing else). */
function gridKey(event) {
  const tiles = [...ui.grid.querySelectorAll(".lib-tile")];
  const at = tiles.indexOf(document.activeElement);
  if (at < 0) return;
  const across = columns(tiles);
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: across, ArrowUp: -across };
  let to;
  if (event.key in moves) to = at + moves[event.key];
  else if (event.key === "Home") to = 0;
  else if (event.key === "End") to = tiles.length - 1;
  else return;
  event.preventDefault();
  if (to < 0) {
    if (event.key === "ArrowUp") ui.q.focus(); // above the first row: the search
    return;
  }
  if (to >= tiles.length) {
    if (event.key !== "ArrowDown") return;
    if (!ui.more.hidden) {
      ui.more.focus();
      return;
    }
    to = tiles.length - 1; // a shorter last row
  }
  tiles[to].focus();
  tiles[to].scrollIntoView({ block: "nearest", inline: "nearest" });
}

/** On a TV, the search bar is a row too: left and right along it, down to the grid. */
function searchKey(event) {
  if (document.body.dataset.layout !== "tv") return;
  const controls = [ui.q, ui.stage, ui.grade, ui.subject, $("search")];
  const at = controls.indexOf(document.activeElement);
  if (at < 0) return;
  const inText = document.activeElement === ui.q;
  const caret = inText ? ui.q.selectionStart : 0;
  if (event.key === "ArrowDown") {
    event.preventDefault();
    const first = ui.grid.querySelector(".lib-tile:not(:disabled)");
    if (first) first.focus();
  } else if (event.key === "ArrowUp") {
    event.preventDefault(); // a select would change its value
  } else if (event.key === "ArrowRight" && (!inText || caret === ui.q.value.length) && at < controls.length - 1) {
    event.preventDefault();
    controls[at + 1].focus();
  } else if (event.key === "ArrowLeft" && (!inText || caret === 0) && at > 0) {
    event.preventDefault();
    controls[at - 1].focus();
  }
}

// -- the player --------------------------------------------------------------------------------------

function nativeHls() {
  return ui.video.canPlayType(HLS_TYPE) !== "";
}

function openPlayer(item, from) {
  if (item.status === "failed") return;
  state.playing = item;
  state.returnTo = from ? from.dataset.id : null;
  ui.playerTitle.textContent = item.title;
  renderPlayerMeta();
  ui.tvLink.value = absolute(mediaUrl(item, "hls/index.m3u8", state.token));
  ui.sourceHls.hidden = !nativeHls();
  ui.playerNote.hidden = true;
  delete ui.video.dataset.fallback;
  ui.video.poster = mediaUrl(item, "poster.jpg", state.token);
  // a TV or set-top box plays HLS where it can (what they are built for); elsewhere the MP4
  const preferred = document.body.dataset.layout === "tv" && nativeHls() ? "hls" : "mp4";
  ui.video.dataset.preferred = preferred;
  setView("player");
  if (!state.pushed) {
    history.pushState({ player: item.id }, "");
    state.pushed = true;
  }
  play(preferred, 0);
  ui.video.focus();
}

function renderPlayerMeta() {
  const item = state.playing;
  if (!item) return;
  const parts = [
    metaLine(item),
    stageName(item.stage),
    item.teacher,
    item.school,
    day(item.date),
    duration(item.duration),
  ].filter(Boolean);
  ui.playerMeta.textContent = parts.join(" · ");
}

function play(source, at) {
  const item = state.playing;
  if (!item) return;
  const video = ui.video;
  video.dataset.source = source;
  video.src = mediaUrl(item, source === "hls" ? "hls/index.m3u8" : "lesson.mp4", state.token);
  if (at > 0) video.addEventListener("loadedmetadata", () => (video.currentTime = at), { once: true });
  // a phone may refuse to start with sound before a tap: the controls are there for it
  video.play().catch(() => {});
  for (const button of [ui.sourceMp4, ui.sourceHls]) {
    button.setAttribute("aria-pressed", String(button.dataset.source === source));
  }
}

/** HLS that does not play (a playlist the browser only half knows, a segment refused) falls back to
 * the MP4 at the same time, and says so. */
function videoError() {
  const video = ui.video;
  if (!state.playing || !video.getAttribute("src")) return;
  if (video.dataset.source === "hls") {
    video.dataset.fallback = "hls";
    setText(ui.playerNote, "library.player.fallback");
    ui.playerNote.hidden = false;
    play("mp4", video.currentTime || 0);
    return;
  }
  showError("media", "library.error.media");
}

function closePlayer(viaHistory) {
  if (!state.playing) return;
  const video = ui.video;
  video.pause();
  video.removeAttribute("src");
  video.removeAttribute("poster");
  video.load();
  state.playing = null;
  if (state.pushed && !viaHistory) {
    state.pushed = false;
    history.back(); // the entry the player added
  }
  state.pushed = false;
  if (state.mode !== "token") return;
  setView("browse");
  const back = state.returnTo && ui.grid.querySelector(`.lib-tile[data-id="${CSS.escape(state.returnTo)}"]`);
  if (back) back.focus();
  else focusFirstTile();
}

/** A remote in the player: Back leaves, left and right seek, Enter plays and pauses. */
function playerKey(event) {
  if (document.body.dataset.view !== "player") return;
  const video = ui.video;
  if (["Escape", "Backspace", "BrowserBack", "GoBack"].includes(event.key)) {
    if (event.target instanceof HTMLInputElement) return;
    event.preventDefault();
    closePlayer(false);
    return;
  }
  if (document.activeElement !== video) return;
  if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    event.preventDefault();
    const step = event.key === "ArrowLeft" ? -SEEK_S : SEEK_S;
    video.currentTime = Math.max(0, Math.min(video.duration || 0, video.currentTime + step));
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    if (video.paused) video.play().catch(() => {});
    else video.pause();
  }
}

async function copyLink() {
  ui.tvLink.select();
  try {
    await navigator.clipboard.writeText(ui.tvLink.value);
    showNotice("library.player.copied");
  } catch {
    // no clipboard here (plain http): the link is selected for the person to copy
  }
}

// -- reviewing (the API key and secret) -----------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  clearError();
  const signed = await signInForm({
    key: ui.apiKey,
    secret: ui.apiSecret,
    name: ui.reviewer,
    nameError: ["need_reviewer", "library.error.need_reviewer"],
    button: ui.signin,
    busy: ui.checking,
    showError,
    handleError: (err) => {
      handleError(err);
      state.credentials = null;
      state.mode = null;
    },
    check: (credentials) => {
      state.credentials = credentials;
      state.mode = "review";
      return admin("GET", "library?limit=1"); // the cheapest call that needs the key and secret
    },
  });
  if (!signed) return;
  const { key, secret } = signed.credentials;
  const reviewer = signed.name;
  store(STORE.key, key);
  store(STORE.secret, secret);
  store(STORE.reviewer, reviewer);
  ui.apiSecret.value = "";
  enterReview(reviewer);
}

function enterReview(reviewer) {
  state.mode = "review";
  state.reviewer = reviewer;
  document.body.dataset.mode = "review";
  for (const [select, values, name] of catalogueSelects()) {
    fillSelect(select, values, name, "library.field.none", select.value);
  }
  setText($("micro-hint"), "library.micro.hint", { max: duration(MAX_MICRO) });
  setView("review");
  loadLists();
}

/** The reviewer's catalogue selects: [select, known values, their names]. */
function catalogueSelects() {
  return [
    [ui.editStage, STAGES, stageName],
    [ui.editGrade, ALL_GRADES, gradeName],
    [ui.editSubject, SUBJECTS, subjectName],
    [ui.fileStage, STAGES, stageName],
    [ui.fileGrade, ALL_GRADES, gradeName],
    [ui.fileSubject, SUBJECTS, subjectName],
  ];
}

function signOut() {
  state.credentials = null;
  state.mode = null;
  state.lists = {};
  state.selected = null;
  state.playToken = null;
  state.reviewGeneration += 1;
  clearTimeout(state.pollTimer);
  delete document.body.dataset.mode;
  store(STORE.key, "");
  store(STORE.secret, "");
  for (const dialog of [ui.confirm, ui.fileDialog]) if (dialog.open) dialog.close();
  ui.reviewList.replaceChildren();
  closeEditor();
  setView("start");
}

/** Every status's items (newest first), read again; the editor keeps its item. */
async function loadLists() {
  if (state.mode !== "review") return;
  const generation = ++state.reviewGeneration;
  ui.reviewLoading.hidden = Object.keys(state.lists).length > 0;
  const words = ui.reviewQ.value.trim();
  try {
    const answers = await Promise.all(
      STATUSES.map((status) => {
        const params = new URLSearchParams({ status, limit: String(REVIEW_LIMIT) });
        if (words) params.set("q", words);
        return admin("GET", `library?${params}`);
      })
    );
    if (!state.playToken) await playToken().catch(() => null); // posters and the player need one
    if (generation !== state.reviewGeneration) return;
    state.lists = Object.fromEntries(STATUSES.map((status, i) => [status, answers[i].items]));
    if (!state.tab) state.tab = ["in_review", "draft", "finishing"].find((s) => state.lists[s].length) || "draft";
    renderTabs();
    renderRows();
    if (state.selected) {
      const fresh = findItem(state.selected.id);
      if (fresh) renderEditor(fresh, false);
    }
    schedulePoll();
    if (ui.error.dataset.code === "network") clearError();
  } catch (err) {
    if (generation === state.reviewGeneration) handleError(err);
  } finally {
    if (generation === state.reviewGeneration) ui.reviewLoading.hidden = true;
  }
}

function findItem(id) {
  for (const items of Object.values(state.lists)) {
    const found = items.find((item) => item.id === id);
    if (found) return found;
  }
  return null;
}

function renderTabs() {
  const tabs = STATUSES.map((status) => {
    const count = (state.lists[status] || []).length;
    const tab = element("button", "lib-tab");
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-selected", String(status === state.tab));
    tab.dataset.status = status;
    tab.append(translated("span", "", `library.status.${status}`));
    tab.append(element("span", "lib-tab-count", count >= REVIEW_LIMIT ? `${REVIEW_LIMIT}+` : String(count)));
    tab.addEventListener("click", () => {
      state.tab = status;
      renderTabs();
      renderRows();
    });
    return tab;
  });
  ui.tabs.replaceChildren(...tabs);
}

function row(item) {
  const li = element("li", "lib-row");
  Object.assign(li.dataset, { id: item.id, status: item.status, kind: item.kind });
  if (state.selected && state.selected.id === item.id) li.classList.add("selected");
  const button = element("button", "lib-row-main");
  button.type = "button";
  const ready = !["finishing", "failed"].includes(item.status);
  const thumb = ready && state.playToken ? posterOf(item, state.playToken.token, "lib-thumb") : element("span", "lib-thumb");
  const text = element("span", "lib-row-text");
  const head = element("span", "lib-row-head");
  head.append(element("span", "lib-title", item.title));
  if (item.kind === "micro") head.append(translated("span", "lib-badge inline", "library.kind.micro"));
  text.append(head);
  const facts = [metaLine(item), item.teacher, day(item.date), item.duration ? duration(item.duration) : ""];
  text.append(element("span", "lib-meta", facts.filter(Boolean).join(" · ")));
  button.append(thumb, text);
  button.addEventListener("click", () => selectItem(item.id));
  li.append(button);
  if (item.status === "finishing") {
    const bar = element("div", "lib-progress");
    const progress = element("progress");
    progress.max = 1;
    progress.value = item.progress || 0;
    setTitle(progress, "library.progress", { percent: percent(item.progress) });
    bar.append(progress, element("span", "lib-progress-text", percent(item.progress)));
    li.append(bar);
  }
  if (item.reason && (item.status === "rejected" || item.status === "failed")) {
    li.append(translated("p", "lib-reason", "library.reason", { reason: item.reason }));
  }
  return li;
}

function renderRows() {
  const items = state.lists[state.tab] || [];
  ui.reviewList.replaceChildren(...items.map(row));
  ui.reviewEmpty.hidden = items.length > 0;
  if (!items.length) setText(ui.reviewEmpty, "library.review.empty", { status: t(`library.status.${state.tab}`) });
}

/** While a job is finishing, its progress is read every second; the lists again once it is done. */
function schedulePoll() {
  clearTimeout(state.pollTimer);
  state.pollTimer = 0;
  if (state.mode !== "review" || !(state.lists.finishing || []).length) return;
  state.pollTimer = setTimeout(poll, POLL_MS);
}

async function poll() {
  state.pollTimer = 0;
  const generation = state.reviewGeneration;
  let changed = false;
  try {
    for (const item of [...(state.lists.finishing || [])]) {
      const now = await admin("GET", `library/${encodeURIComponent(item.id)}`);
      if (generation !== state.reviewGeneration) return;
      if (now.status !== "finishing") changed = true;
      Object.assign(item, now);
      const progress = ui.reviewList.querySelector(`.lib-row[data-id="${CSS.escape(item.id)}"] progress`);
      if (progress) {
        progress.value = now.progress || 0;
        setTitle(progress, "library.progress", { percent: percent(now.progress) });
        progress.nextElementSibling.textContent = percent(now.progress);
      }
    }
  } catch (err) {
    handleError(err);
    return;
  }
  if (changed) await loadLists();
  else schedulePoll();
}

// -- the editor ----------------------------------------------------------------------------------------

async function playToken() {
  const now = Date.now() / 1000;
  if (state.playToken && state.playToken.expiresAt - PLAY_TOKEN_MARGIN_S > now) return state.playToken.token;
  const minted = await admin("POST", "tokens", {
    room: "library",
    identity: "library-reviewer",
    role: "lecturer",
    name: state.reviewer,
    ttl: PLAY_TOKEN_TTL,
  });
  state.playToken = { token: minted.token, expiresAt: minted.expires_at };
  return minted.token;
}

async function selectItem(id) {
  const item = findItem(id);
  if (!item) return;
  const first = !state.selected || state.selected.id !== id;
  state.selected = item;
  for (const li of ui.reviewList.querySelectorAll(".lib-row")) li.classList.toggle("selected", li.dataset.id === id);
  if (!["finishing", "failed"].includes(item.status)) {
    try {
      await playToken(); // a fresh one if the last is about to expire
    } catch (err) {
      handleError(err);
    }
  }
  renderEditor(item, first);
}

function closeEditor() {
  state.selected = null;
  ui.editor.hidden = true;
  ui.reviewVideo.pause();
  ui.reviewVideo.removeAttribute("src");
  ui.reviewVideo.load();
  for (const li of ui.reviewList.querySelectorAll(".lib-row.selected")) li.classList.remove("selected");
}

/** The editor for `item`; `fresh` (another item than before): its form and player from scratch. */
function renderEditor(item, fresh) {
  state.selected = item;
  ui.editor.hidden = false;
  ui.editor.dataset.id = item.id;
  ui.editor.dataset.status = item.status;
  ui.editor.dataset.kind = item.kind;
  ui.editorTitle.textContent = item.title;
  setText(ui.editorStatus, `library.status.${item.status}`);
  ui.editorStatus.dataset.status = item.status;
  ui.editorReason.hidden = !item.reason;
  if (item.reason) setText(ui.editorReason, "library.reason", { reason: item.reason });
  renderFacts(item);
  renderSteps(item);
  const ready = !["finishing", "failed"].includes(item.status);
  if (fresh) {
    fillEditForm(item);
    ui.saved.textContent = "";
    ui.microStart.value = "";
    ui.microEnd.value = "";
    ui.microTitle.value = "";
    ui.microError.hidden = true;
    const video = ui.reviewVideo;
    video.pause();
    if (ready && state.playToken) {
      video.src = mediaUrl(item, "lesson.mp4", state.playToken.token);
      video.poster = mediaUrl(item, "poster.jpg", state.playToken.token);
    } else {
      video.removeAttribute("src");
      video.removeAttribute("poster");
      video.load();
    }
  }
  ui.reviewVideo.hidden = !ready;
  ui.timeline.hidden = !ready || item.kind !== "lesson";
  ui.microForm.hidden = !ready || item.kind !== "lesson";
  updateTimeline();
}

function renderFacts(item) {
  const facts = [t(`library.kind.${item.kind}`)];
  if (item.duration) facts.push(duration(item.duration));
  if (item.stage) facts.push(stageName(item.stage));
  if (item.kind === "micro" && item.lesson) {
    const lesson = findItem(item.lesson);
    facts.push(t("library.facts.from", { title: lesson ? lesson.title : item.lesson, at: duration(item.start) }));
  }
  if (item.recording) facts.push(t("library.facts.recording", { recording: item.recording }));
  if (item.reviewer) facts.push(t("library.facts.reviewer", { name: item.reviewer }));
  if (item.created_at) facts.push(t("library.facts.created", { time: when(item.created_at) }));
  ui.editorFacts.textContent = facts.join(" · ");
}

function renderSteps(item) {
  const buttons = Object.entries(STEPS)
    .filter(([, from]) => from.includes(item.status))
    .map(([action]) => {
      const button = translated("button", `small-button step step-${action}`, `library.step.${action}`);
      button.type = "button";
      button.dataset.action = action;
      button.addEventListener("click", () => askStep(item, action));
      return button;
    });
  ui.steps.replaceChildren(...buttons);
  ui.steps.hidden = buttons.length === 0;
}

function fillEditForm(item) {
  ui.editTitle.value = item.title || "";
  fillSelect(ui.editStage, STAGES, stageName, "library.field.none", item.stage);
  ui.editStage.value = item.stage || "";
  fillSelect(ui.editGrade, ALL_GRADES, gradeName, "library.field.none", item.grade);
  ui.editGrade.value = item.grade || "";
  fillSelect(ui.editSubject, SUBJECTS, subjectName, "library.field.none", item.subject);
  ui.editSubject.value = item.subject || "";
  ui.editTeacher.value = item.teacher || "";
  ui.editSchool.value = item.school || "";
  ui.editDate.value = item.date || "";
  ui.editTags.value = (item.tags || []).join(", ");
}

function tagsOf(text) {
  return text
    .split(/[,，、]/)
    .map((tag) => tag.trim())
    .filter(Boolean);
}

/** The catalogue fields of a form: empty ones are null (cleared), the title never. */
function catalogueOf(fields) {
  const body = {};
  for (const [name, input] of Object.entries(fields)) {
    const value = input.value.trim();
    body[name] = value || null;
  }
  return body;
}

async function saveItem(event) {
  event.preventDefault();
  const item = state.selected;
  if (!item) return;
  const title = ui.editTitle.value.trim();
  if (!title) {
    showError("need_title", "library.error.need_title");
    ui.editTitle.focus();
    return;
  }
  const body = catalogueOf({
    stage: ui.editStage,
    grade: ui.editGrade,
    subject: ui.editSubject,
    teacher: ui.editTeacher,
    school: ui.editSchool,
    date: ui.editDate,
  });
  body.title = title;
  body.tags = tagsOf(ui.editTags.value);
  ui.save.disabled = true;
  try {
    const saved = await admin("PATCH", `library/${encodeURIComponent(item.id)}`, body);
    clearError();
    setText(ui.saved, "library.editor.saved");
    replaceItem(saved);
    renderEditor(saved, false);
    ui.editorTitle.textContent = saved.title;
  } catch (err) {
    handleError(err);
  } finally {
    ui.save.disabled = false;
  }
}

function replaceItem(item) {
  for (const items of Object.values(state.lists)) {
    const at = items.findIndex((i) => i.id === item.id);
    if (at >= 0) items[at] = item;
  }
  renderRows();
}

// -- review steps, confirmed ---------------------------------------------------------------------------

function askStep(item, action) {
  state.pending = { item, action };
  fillConfirm();
  ui.confirmReviewer.value = state.reviewer;
  ui.confirmReason.value = "";
  ui.confirmError.hidden = true;
  ui.confirm.showModal();
  // never the confirm button: a stray Enter must not publish; the reason first when one is needed
  (action === "reject" ? ui.confirmReason : ui.confirmCancel).focus();
}

function fillConfirm() {
  const pending = state.pending;
  if (!pending) return;
  const { item, action } = pending;
  setText(ui.confirmTitle, `library.confirm.${action}`, { title: item.title });
  setText(ui.confirmWhat, `library.confirm.what.${action}`);
  setText(ui.confirmGo, `library.step.${action}`);
  ui.confirm.dataset.action = action;
  ui.confirmReviewerBox.hidden = !["publish", "reject"].includes(action);
  ui.confirmReasonBox.hidden = action !== "reject";
}

async function confirmed(event) {
  event.preventDefault();
  const pending = state.pending;
  if (!pending) return;
  const { item, action } = pending;
  const reviewer = ui.confirmReviewer.value.trim();
  const reason = ui.confirmReason.value.trim();
  const missing =
    (action === "reject" && !reason && ["library.error.need_reason", ui.confirmReason]) ||
    (["publish", "reject"].includes(action) && !reviewer && ["library.error.need_reviewer", ui.confirmReviewer]);
  if (missing) {
    setText(ui.confirmError, missing[0]);
    ui.confirmError.hidden = false;
    missing[1].focus();
    return;
  }
  const body = { action };
  if (["publish", "reject"].includes(action)) body.reviewer = reviewer;
  if (action === "reject") body.reason = reason;
  ui.confirmGo.disabled = true;
  try {
    const moved = await admin("POST", `library/${encodeURIComponent(item.id)}/review`, body);
    closeConfirm();
    clearError();
    showNotice(`library.done.${action}`, { title: moved.title });
    state.selected = moved;
    state.tab = moved.status;
    await loadLists();
  } catch (err) {
    // a step refused (someone else moved it meanwhile): said in the dialog, the lists read again
    setText(ui.confirmError, "library.error.server", { message: err.message });
    ui.confirmError.hidden = false;
    if (err.status === 401 || err.code === "network") {
      closeConfirm();
      handleError(err);
    } else {
      loadLists();
    }
  } finally {
    ui.confirmGo.disabled = false;
  }
}

function closeConfirm() {
  state.pending = null;
  if (ui.confirm.open) ui.confirm.close();
}

// -- micro-lessons: a span of the lesson's timeline ------------------------------------------------------

function seconds(input) {
  const value = Number.parseFloat(input.value);
  return Number.isFinite(value) ? value : null;
}

function lessonLength() {
  const item = state.selected;
  const fromVideo = Number.isFinite(ui.reviewVideo.duration) ? ui.reviewVideo.duration : 0;
  return (item && item.duration) || fromVideo;
}

function updateTimeline() {
  const total = lessonLength();
  const start = seconds(ui.microStart);
  const end = seconds(ui.microEnd);
  const head = ui.reviewVideo.currentTime || 0;
  ui.timelineHead.style.left = total ? `${Math.min(100, (head / total) * 100)}%` : "0";
  const span = start !== null && end !== null && end > start && total;
  ui.timelineSpan.hidden = !span;
  if (span) {
    ui.timelineSpan.style.left = `${Math.max(0, (start / total) * 100)}%`;
    ui.timelineSpan.style.width = `${Math.min(100, ((end - start) / total) * 100)}%`;
  }
  ui.timelineSpan.classList.toggle("too-long", span && end - start > MAX_MICRO);
  if (start !== null && end !== null && end > start) {
    setText(ui.microLength, "library.micro.length", { length: duration(end - start), max: duration(MAX_MICRO) });
  } else {
    setText(ui.microLength, "library.micro.length.none", { max: duration(MAX_MICRO) });
  }
}

function mark(input) {
  input.value = (Math.round((ui.reviewVideo.currentTime || 0) * 10) / 10).toFixed(1);
  updateTimeline();
}

/** What is wrong with the span, as a message key, or null. */
function spanProblem(start, end) {
  if (start === null || end === null) return "library.micro.error.numbers";
  if (start < 0 || end <= start) return "library.micro.error.order";
  if (end - start > MAX_MICRO) return "library.micro.error.long";
  const total = lessonLength();
  if (total && end > total + 0.5) return "library.micro.error.beyond";
  return null;
}

async function cutMicro(event) {
  event.preventDefault();
  const lesson = state.selected;
  if (!lesson) return;
  const start = seconds(ui.microStart);
  const end = seconds(ui.microEnd);
  const problem = spanProblem(start, end);
  if (problem) {
    setText(ui.microError, problem, { max: duration(MAX_MICRO), length: duration(lessonLength()) });
    ui.microError.hidden = false;
    return;
  }
  ui.microError.hidden = true;
  const exact = ui.microForm.querySelector('input[name="exact"]:checked').value === "true";
  const title =
    ui.microTitle.value.trim() || t("library.micro.default_title", { title: lesson.title, start: duration(start), end: duration(end) });
  ui.cut.disabled = true;
  ui.cutting.hidden = false;
  try {
    const micro = await admin("POST", `library/${encodeURIComponent(lesson.id)}/micro`, { start, end, exact, title });
    clearError();
    showNotice("library.done.micro", { title: micro.title });
    state.tab = micro.status;
    await loadLists();
    await selectItem(micro.id);
  } catch (err) {
    if (err.status === 400) {
      setText(ui.microError, "library.error.server", { message: err.message });
      ui.microError.hidden = false;
    } else {
      handleError(err);
    }
  } finally {
    ui.cut.disabled = false;
    ui.cutting.hidden = true;
  }
}

// -- filing a recording -----------------------------------------------------------------------------------

function openFile() {
  for (const input of [ui.fileRecording, ui.fileTitleInput, ui.fileTeacher, ui.fileSchool, ui.fileDate, ui.fileTags]) {
    input.value = "";
  }
  for (const select of [ui.fileStage, ui.fileGrade, ui.fileSubject]) select.value = "";
  ui.fileError.hidden = true;
  ui.fileFound.hidden = true;
  ui.fileDialog.showModal();
  (ui.fileRoom.value ? ui.fileRecording : ui.fileRoom).focus();
}

/** The recording a room is making now (GET rooms/{room}/recording): its folder, to file once stopped. */
async function findRecording() {
  const room = ui.fileRoom.value.trim();
  ui.fileError.hidden = true;
  ui.fileFound.hidden = true;
  if (!room) {
    ui.fileRoom.focus();
    return;
  }
  try {
    const info = await admin("GET", `rooms/${encodeURIComponent(room)}/recording`);
    ui.fileRecording.value = info.directory;
    setText(ui.fileFound, info.recording ? "library.file.found.recording" : "library.file.found", {
      recording: info.directory,
    });
    ui.fileFound.hidden = false;
  } catch (err) {
    if (err.status === 404) {
      setText(ui.fileError, "library.file.none", { room });
      ui.fileError.hidden = false;
    } else {
      handleError(err);
    }
  }
}

async function fileRecording(event) {
  event.preventDefault();
  const recording = ui.fileRecording.value.trim();
  const title = ui.fileTitleInput.value.trim();
  const problem = !/^[\w.-]{1,64}\/\d{8}T\d{6}$/.test(recording)
    ? ["library.file.error.recording", ui.fileRecording]
    : !title && ["library.error.need_title", ui.fileTitleInput];
  if (problem) {
    setText(ui.fileError, problem[0]);
    ui.fileError.hidden = false;
    problem[1].focus();
    return;
  }
  const body = { recording, title };
  for (const [name, input] of Object.entries({
    stage: ui.fileStage,
    grade: ui.fileGrade,
    subject: ui.fileSubject,
    teacher: ui.fileTeacher,
    school: ui.fileSchool,
    date: ui.fileDate,
  })) {
    if (input.value.trim()) body[name] = input.value.trim();
  }
  const tags = tagsOf(ui.fileTags.value);
  if (tags.length) body.tags = tags;
  ui.fileGo.disabled = true;
  try {
    const item = await admin("POST", "library", body);
    ui.fileDialog.close();
    clearError();
    showNotice("library.done.filed", { title: item.title });
    // shown at once, finishing; its progress is read from now on
    state.lists.finishing = [item, ...(state.lists.finishing || []).filter((i) => i.id !== item.id)];
    state.tab = "finishing";
    renderTabs();
    renderRows();
    schedulePoll();
  } catch (err) {
    if (err.status === 400 || err.status === 404) {
      setText(ui.fileError, "library.error.server", { message: err.message });
      ui.fileError.hidden = false;
    } else {
      ui.fileDialog.close();
      handleError(err);
    }
  } finally {
    ui.fileGo.disabled = false;
  }
}

// -- start ---------------------------------------------------------------------------------------------

function rerender() {
  // catalogue names, dates and numbers are written in the reader's language and format
  if (state.mode === "token") {
    renderFilters();
    // in place: the tile in focus (a TV's) keeps it, and the posters are not fetched again
    for (const button of ui.grid.querySelectorAll(".lib-tile")) {
      const item = state.items.find((i) => i.id === button.dataset.id);
      if (item) button.querySelector(".lib-meta").textContent = metaLine(item);
    }
    renderPlayerMeta();
  }
  if (state.mode === "review") {
    for (const [select, values, name] of catalogueSelects()) {
      const value = select.value;
      fillSelect(select, values, name, "library.field.none", value);
      select.value = value;
    }
    if (Object.keys(state.lists).length) {
      renderTabs();
      renderRows();
    }
    if (state.selected) renderEditor(state.selected, false);
    fillConfirm();
  }
  applyLayout();
}

function start() {
  languageMenu(ui.lang, rerender);
  phone.addEventListener("change", applyLayout);

  ui.errorClose.addEventListener("click", clearError);
  ui.layoutToggle.addEventListener("click", () => setTv(!state.forcedTv));
  ui.signout.addEventListener("click", () => {
    clearError();
    if (state.mode === "review") signOut();
    else leaveToken();
  });

  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    const token = ui.token.value.trim();
    if (!token) {
      showError("need_token", "library.error.need_token");
      ui.token.focus();
      return;
    }
    enterToken(token);
  });
  ui.loginForm.addEventListener("submit", signIn);

  // browsing
  ui.searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    loadItems(false);
  });
  let typing = 0;
  ui.q.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => loadItems(false), 300);
  });
  ui.stage.addEventListener("change", () => {
    fillSelect(ui.grade, gradesFor(ui.stage.value), gradeName, "library.filter.all_grades");
    loadItems(false);
  });
  for (const select of [ui.grade, ui.subject]) select.addEventListener("change", () => loadItems(false));
  ui.searchForm.addEventListener("keydown", searchKey);
  ui.grid.addEventListener("keydown", gridKey);
  ui.more.addEventListener("click", () => loadItems(true));

  // the player
  ui.back.addEventListener("click", () => closePlayer(false));
  ui.sourceMp4.addEventListener("click", () => play("mp4", ui.video.currentTime || 0));
  ui.sourceHls.addEventListener("click", () => {
    delete ui.video.dataset.fallback;
    ui.playerNote.hidden = true;
    play("hls", ui.video.currentTime || 0);
  });
  ui.video.addEventListener("error", videoError);
  ui.copyLink.addEventListener("click", copyLink);
  document.addEventListener("keydown", playerKey);
  window.addEventListener("popstate", () => {
    if (state.playing) closePlayer(true);
  });

  // reviewing
  ui.refresh.addEventListener("click", () => loadLists());
  let reviewTyping = 0;
  ui.reviewQ.addEventListener("input", () => {
    clearTimeout(reviewTyping);
    reviewTyping = setTimeout(() => loadLists(), 300);
  });
  ui.editorClose.addEventListener("click", closeEditor);
  ui.editForm.addEventListener("submit", saveItem);
  ui.confirmForm.addEventListener("submit", confirmed);
  ui.confirmCancel.addEventListener("click", closeConfirm);
  ui.confirm.addEventListener("close", () => {
    state.pending = null;
  });
  ui.markStart.addEventListener("click", () => mark(ui.microStart));
  ui.markEnd.addEventListener("click", () => mark(ui.microEnd));
  for (const input of [ui.microStart, ui.microEnd]) input.addEventListener("input", updateTimeline);
  for (const name of ["timeupdate", "seeked", "loadedmetadata"]) ui.reviewVideo.addEventListener(name, updateTimeline);
  ui.microForm.addEventListener("submit", cutMicro);
  ui.fileOpen.addEventListener("click", openFile);
  ui.fileFind.addEventListener("click", findRecording);
  ui.fileForm.addEventListener("submit", fileRecording);
  ui.fileCancel.addEventListener("click", () => ui.fileDialog.close());
  state.refreshTimer = setInterval(() => {
    if (state.mode === "review" && document.visibilityState === "visible" && !state.pollTimer) loadLists();
  }, REFRESH_MS);

  const params = new URLSearchParams(location.search);
  state.forcedTv = params.get("layout") === "tv";
  const token = params.get("token") || stored(STORE.token);
  const key = stored(STORE.key);
  const secret = stored(STORE.secret);
  if (token) {
    enterToken(token);
  } else if (key && secret) {
    // a reload of a signed-in tab: straight back (a refused secret comes back to the sign-in)
    state.credentials = { key, secret };
    ui.reviewer.value = stored(STORE.reviewer);
    enterReview(stored(STORE.reviewer));
  } else {
    ui.reviewer.value = stored(STORE.reviewer);
    setView("start");
  }
}

start();
