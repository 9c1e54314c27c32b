// The lesson page: join with a token (or a link carrying one), then the page of one's role.
//
// One page, five layouts, chosen from the joined participant's role and the room's kind
// (body[data-page]):
//   grid      a fusion lesson: everyone in a grid, the active speaker (or a pinned tile, or a screen
//             share) on the large view, the lesson's panel in a drawer;
//   lecturer  dual-teacher and live: who is on stage (send back), the classrooms in a grid (bring on
//             stage, mute), the raised hands, questions, chat and the waiting room beside them;
//   tutor     its classroom's box and students, the lecturer on the large view, its classroom's
//             hands, questions and chat;
//   box       a classroom's TV or projector: the lecturer full screen and whoever is on stage, almost
//             no controls; it joins from its link and comes back by itself after any drop;
//   viewer    a live room's (or a student's) page: the presenter, chat, questions, the hand.
//
// Talks to the server only through the SDK in kelian.js; the lesson's panel is lesson.js. All text
// comes from i18n.js. Hooks for tests: the Room is window.kelianRoom, body[data-view] is "join",
// "waiting" or "classroom", body[data-page] the layout, body[data-state] the Room's state,
// #error[data-code] the code of the error shown, tiles carry data-identity, data-role, data-on-stage.

import { KelianError, Room } from "./kelian.js";
import { hideBanner, languageMenu, setText, setTitle, showBanner } from "./i18n.js";
import { LECTURE, LessonPanel, MODERATORS } from "./lesson.js";

const $ = (id) => document.getElementById(id);

const ui = {
  lang: $("lang"),
  banner: $("banner"),
  error: $("error"),
  errorText: $("error-text"),
  errorClose: $("error-close"),
  notice: $("notice"),
  roomLabel: $("room-label"),
  joinView: $("join-view"),
  form: $("join-form"),
  room: $("room"),
  name: $("name"),
  token: $("token"),
  join: $("join"),
  quickJoin: $("quick-join"),
  quickHint: $("quick-hint"),
  joining: $("joining"),
  waitingView: $("waiting-view"),
  waitingPosition: $("waiting-position"),
  waitingLeave: $("waiting-leave"),
  classroom: $("classroom"),
  stage: $("stage"),
  stageVideo: $("stage-video"),
  stageEmpty: $("stage-empty"),
  stageLabel: $("stage-label"),
  stageStrip: $("stage-strip"),
  boxStatus: $("box-status"),
  boxStatusText: $("box-status-text"),
  boxStatusDetail: $("box-status-detail"),
  boxRejoin: $("box-rejoin"),
  onstageList: $("onstage-list"),
  onstageEmpty: $("onstage-empty"),
  onstageCount: $("onstage-count"),
  grid: $("grid"),
  localTile: $("local-tile"),
  localVideo: $("local-video"),
  mic: $("toggle-mic"),
  camera: $("toggle-camera"),
  screen: $("toggle-screen"),
  enableAudio: $("enable-audio"),
  leave: $("leave"),
  tileTemplate: $("tile-template"),
};

const STORE_ROOM = "kelian.room";
const STORE_NAME = "kelian.name";
const NOTICE_MS = 8000;
// A classroom box that cannot reach the lesson tries again after these many seconds, then every 30.
const BOX_RETRY_S = [1, 2, 4, 8, 15, 30];
// Kinds in which a classroom is a box watching a lecture (in a fusion lesson it is one of a grid).
const LECTURE_KINDS = new Set(["dual_teacher", "live"]);
// Roles whose tiles the lecturer's grid shows even before they publish.
const GRID_ROLES = new Set(["classroom", "tutor", "lecturer", "admin"]);

// Error codes with a message of their own in i18n.js ("error.<code>").
const KNOWN_ERRORS = new Set([
  "unauthorized",
  "forbidden",
  "room_full",
  "network",
  "device_denied",
  "device_missing",
  "device_busy",
  "removed",
  "room_closed",
  "replaced",
  "denied",
  "room_locked",
  "stage_full",
  "rate_limited",
  "too_large",
]);

/** The one Room this page is in (or joining), else null. */
let room = null;
let joining = false;
/** sid -> the tile and streams of one remote participant. */
const peers = new Map();
let pinned = null; // sid the user clicked
let speaker = null; // sid of the last remote active speaker
let stageTrack = null; // id of the track on the large view
let page = "grid"; // the layout, once joined
let entered = null; // the Room whose lesson the page shows (not while joining or waiting)
let claims = {}; // the token's claims, read for display only (the server checks the signature)

/** A classroom box: its link's token, and how its attempts to come back are going. */
const box = { active: false, token: "", roomName: "", attempt: 0, timer: 0 };

const local = {
  tracks: { camera: null, microphone: null, screen: null },
  muted: { camera: false, microphone: false },
  busy: { camera: false, microphone: false, screen: false },
  canPublish: false,
};

const lesson = new LessonPanel({
  notify: (key, vars) => showNotice(key, vars),
  fail: (err) => showError(codeOf(err) || "error.generic", err),
  changed: () => renderTileBadges(),
});

// -- small helpers -----------------------------------------------------------------------------------

function store(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
  } catch {
    // storage disabled: nothing to remember
  }
}

function stored(key) {
  try {
    return localStorage.getItem(key) || "";
  } catch {
    return "";
  }
}

function codeOf(err) {
  if (err instanceof KelianError) return err.code;
  return (err && typeof err.code === "string" && err.code) || "";
}

function messageOf(err) {
  return (err && (err.message || String(err))) || "?";
}

function showError(code, err) {
  const key = KNOWN_ERRORS.has(code) ? `error.${code}` : code.startsWith("error.") ? code : "error.generic";
  const vars = key === "error.generic" || key === "error.dev_token" ? { message: messageOf(err) } : {};
  showBanner(ui.error, ui.errorText, code, key, vars);
}

function clearError() {
  hideBanner(ui.error, ui.errorText);
}

let noticeTimer = 0;
function showNotice(key, vars = {}) {
  setText(ui.notice, key, vars);
  ui.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    ui.notice.hidden = true;
  }, NOTICE_MS);
}

function play(media) {
  const attempt = media.play();
  if (attempt && typeof attempt.catch === "function") {
    attempt.catch((err) => {
      // Without a click first, browsers may refuse to play sound: offer a button that is a click.
      if (err && err.name === "NotAllowedError" && media.tagName === "AUDIO") ui.enableAudio.hidden = false;
    });
  }
}

function initial(name) {
  return (Array.from((name || "?").trim())[0] || "?").toUpperCase();
}

/** What a token says (room, role, kind, classroom), for display and for choosing a layout before
 *  the server answers; never trusted: the server checks the signature and decides. */
function tokenClaims(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload && typeof payload === "object" ? payload : {};
  } catch {
    return {};
  }
}

function tokenRoom(token) {
  const name = tokenClaims(token).room;
  return typeof name === "string" ? name : "";
}

/** The layout for a role in a kind of lesson. */
function pageFor(role, kind) {
  if (!LECTURE_KINDS.has(kind)) return "grid";
  if (LECTURE.has(role)) return "lecturer";
  if (role === "tutor") return "tutor";
  if (role === "classroom" || role === "recorder") return "box";
  return "viewer";
}

/** The classroom a participant belongs to: a box is its own; a tutor's or a student's is in its token. */
function classroomOf(participant) {
  if (participant.role === "classroom") return participant.identity;
  return typeof claims.classroom === "string" ? claims.classroom : null;
}

// -- views ---------------------------------------------------------------------------------------------

function setView(view) {
  document.body.dataset.view = view;
  ui.joinView.hidden = view !== "join";
  ui.waitingView.hidden = view !== "waiting";
  ui.classroom.hidden = view !== "classroom";
}

function setPage(name) {
  page = name;
  document.body.dataset.page = name;
  setText(ui.stageEmpty, name === "grid" ? "room.waiting" : "room.waiting_teacher");
}

function setJoining(on) {
  joining = on;
  ui.joining.hidden = !on;
  ui.join.disabled = on;
  ui.quickJoin.disabled = on;
}

function setBanner(state) {
  document.body.dataset.state = state;
  const inLesson = document.body.dataset.view === "classroom";
  // A box says it itself, in large type on its screen (box-status); nobody reads a banner on a TV.
  if (!box.active && (state === "reconnecting" || (state === "connecting" && inLesson))) {
    setText(ui.banner, `state.${state}`);
    ui.banner.dataset.state = state;
    ui.banner.hidden = false;
  } else {
    ui.banner.hidden = true;
  }
  if (box.active && state === "reconnecting") setBoxStatus("state.reconnecting");
  else if (box.active && state === "connected") setBoxStatus(null);
}

/** The box's own message on its screen (connecting, trying again, replaced); null hides it.
 *  `code`, an error other than the network's, is said too: whoever comes to fix the box reads it. */
function setBoxStatus(key, vars = {}, rejoin = false, code = "") {
  ui.boxStatus.hidden = !key;
  ui.boxRejoin.hidden = !rejoin;
  if (key) setText(ui.boxStatusText, key, vars);
  ui.boxStatus.dataset.status = key || "";
  const detail = KNOWN_ERRORS.has(code) && code !== "network" ? `error.${code}` : "";
  if (detail) setText(ui.boxStatusDetail, detail);
  else {
    delete ui.boxStatusDetail.dataset.i18n;
    ui.boxStatusDetail.textContent = "";
  }
}

// -- joining ------------------------------------------------------------------------------------------

async function join(token, roomName) {
  if (joining || room) return;
  clearError();
  ui.notice.hidden = true;
  claims = tokenClaims(token);
  clearTimeout(box.timer);
  box.active = (box.active && box.token === token) || (claims.role === "classroom" && LECTURE_KINDS.has(claims.kind));
  if (box.active) {
    // a TV shows its lesson's screen from the first moment, never the join form
    box.token = token;
    box.roomName = roomName;
    setPage("box");
    renderPublishControls();
    setView("classroom");
    setBoxStatus("box.connecting");
  }
  setJoining(true);
  let r;
  try {
    r = new Room({ token });
  } catch (err) {
    setJoining(false);
    showError(codeOf(err) || "unauthorized", err);
    return;
  }
  room = r;
  window.kelianRoom = r;
  listen(r);
  try {
    await r.connect();
  } catch (err) {
    if (room === r) {
      room = null;
      setJoining(false);
      setBanner("closed");
      if (box.active) {
        retryBox(codeOf(err));
        return;
      }
      setView("join");
      showError(codeOf(err) || "network", err);
    }
    return;
  }
  if (room !== r) return; // gave up (disconnected) while connecting
  setJoining(false);
  box.attempt = 0;
  enterClassroom(r, roomName || tokenRoom(token));
  await startMedia(r);
}

/** A box that could not join, or lost its lesson, tries again, later each time; it never shows
 *  the join form, which nobody in front of a TV could fill in. */
function retryBox(code = "") {
  const seconds = BOX_RETRY_S[Math.min(box.attempt, BOX_RETRY_S.length - 1)];
  box.attempt += 1;
  document.body.dataset.retries = String(box.attempt);
  setBoxStatus("box.retry", { seconds }, false, code);
  clearTimeout(box.timer);
  box.timer = setTimeout(() => join(box.token, box.roomName), seconds * 1000);
}

function enterClassroom(r, roomName) {
  entered = r;
  ui.roomLabel.textContent = roomName || "";
  const me = r.local || {};
  setPage(pageFor(me.role, r.kind));
  box.active = page === "box" && me.role === "classroom";
  document.body.dataset.kind = r.kind || "fusion";
  document.body.dataset.role = me.role || "";
  ui.localTile.dataset.identity = me.identity || "";
  ui.localTile.dataset.sid = me.sid || "";
  const nameEl = ui.localTile.querySelector(".name");
  if (page === "box") {
    setText(nameEl, "room.here");
  } else if (me.name) {
    delete nameEl.dataset.i18n;
    nameEl.textContent = me.name;
  } else {
    setText(nameEl, "room.you");
  }
  ui.localTile.querySelector(".avatar").dataset.initial = initial(me.name || me.identity);
  local.canPublish = Boolean(r.grants.publish);
  renderPublishControls();
  renderControls();
  setView("classroom");
  setBanner(r.state || "connected");
  setBoxStatus(null);
  lesson.attach(r, { page, role: me.role || "", classroom: classroomOf(me) });
  for (const participant of r.participants.values()) {
    if (isLocal(r, participant)) continue;
    const peer = addPeer(participant);
    for (const info of participant.tracks?.values() ?? []) {
      if (info.track) attachTrack(peer, info, info.track);
      showMuted(peer, info);
    }
  }
  renderLayout();
}

async function startMedia(r) {
  if (!local.canPublish) {
    if (page === "grid") showNotice("notice.viewer");
    return;
  }
  let problem = null;
  for (const source of ["camera", "microphone"]) {
    if (local.tracks[source]) continue;
    try {
      await publish(r, source);
    } catch (err) {
      if (room !== r) return;
      problem = problem || err;
    }
  }
  if (problem && room === r) showError(codeOf(problem) || "error.generic", problem);
}

async function publish(r, source) {
  local.busy[source] = true;
  renderControls();
  try {
    let track;
    if (source === "camera") track = await r.publishCamera({ simulcast: true }); // each viewer gets the layer its tile needs
    else if (source === "microphone") track = await r.publishMicrophone();
    else track = await r.publishScreen();
    if (room === r) setLocalTrack(source, track);
    return track;
  } finally {
    local.busy[source] = false;
    renderControls();
  }
}

function setLocalTrack(source, track) {
  local.tracks[source] = track || null;
  if (source !== "screen") local.muted[source] = Boolean(track && !track.enabled);
  if (source === "camera") {
    const shown = ui.localVideo.srcObject ? ui.localVideo.srcObject.getVideoTracks()[0] : null;
    if (shown !== (track || null)) {
      ui.localVideo.srcObject = track ? new MediaStream([track]) : null;
      if (track) play(ui.localVideo);
    }
  }
  renderControls();
}

function isLocal(r, participant) {
  return participant === r.local || (r.local && participant && participant.sid === r.local.sid);
}

// -- room events ---------------------------------------------------------------------------------------

function listen(r) {
  const on = (event, handler) =>
    r.on(event, (...args) => {
      if (room === r) handler(...args);
    });

  on("state", (state) => setBanner(state));

  on("waiting_room", ({ position }) => {
    setView("waiting");
    setText(ui.waitingPosition, "waiting.position", { position });
  });

  on("participant_joined", (participant) => {
    if (!isLocal(r, participant)) addPeer(participant);
    renderLayout();
  });

  on("participant_left", (participant) => {
    removePeer(participant.sid);
    renderLayout();
  });

  on("track_subscribed", (participant, info, track) => {
    if (isLocal(r, participant)) return;
    const peer = addPeer(participant);
    attachTrack(peer, info, track || info.track);
    showMuted(peer, info);
    renderLayout();
  });

  on("track_unsubscribed", (participant, info) => {
    const peer = peers.get(participant.sid);
    if (!peer) return;
    detachTrack(peer, info);
    renderLayout();
  });

  on("track_muted", (participant, info) => {
    if (isLocal(r, participant)) {
      if (info.source !== "camera" && info.source !== "microphone") return;
      const wasMuted = local.muted[info.source];
      local.muted[info.source] = Boolean(info.muted);
      // Not our own click: the teacher did it.
      if (info.muted && !wasMuted && !local.busy[info.source]) {
        showNotice(info.source === "microphone" ? "notice.muted_by_teacher" : "notice.camera_off_by_teacher");
      }
      renderControls();
      return;
    }
    const peer = peers.get(participant.sid);
    if (peer) {
      showMuted(peer, info);
      renderTileActions(peer);
    }
  });

  on("track_unsupported", (participant, info, codec) => {
    showNotice("notice.track_unsupported", { name: participant.name || participant.identity, codec });
  });

  on("active_speakers", (sids) => {
    const speaking = new Set(sids || []);
    for (const peer of peers.values()) peer.tile.classList.toggle("speaking", speaking.has(peer.sid));
    ui.localTile.classList.toggle("speaking", Boolean(r.local && speaking.has(r.local.sid)));
    const loudest = (sids || []).find((sid) => peers.has(sid));
    if (loudest && loudest !== speaker) {
      speaker = loudest;
      if (page === "grid") renderLayout();
    }
  });

  on("quality", (participant, quality) => {
    const tile = isLocal(r, participant) ? ui.localTile : peers.get(participant.sid)?.tile;
    if (tile) setQuality(tile.querySelector(".quality"), quality);
  });

  on("stage", () => renderLayout());

  on("lesson", () => {
    // a resume or an admission: what we may do may have changed while we were away
    if (entered === r) onGrants(r, r.grants);
    renderLayout();
  });

  on("permissions", (grants) => onGrants(r, grants));

  on("local_track", (source, track) => setLocalTrack(source, track));

  on("local_track_ended", (source, reason) => {
    setLocalTrack(source, null);
    if (source === "screen" && reason !== "revoked") showNotice("notice.screen_ended");
  });

  on("disconnected", (reason) => {
    if (joining) return; // connect() rejects too, with the more precise reason
    if (box.active) {
      leaveClassroom(r, { keepView: true });
      // another screen took this classroom over, or the teacher removed it: coming back by itself
      // would undo that, so it waits for a person to press "join again"
      if (reason === "replaced" || reason === "removed") setBoxStatus(`box.${reason}`, {}, true);
      else retryBox(reason);
      return;
    }
    leaveClassroom(r);
    if (reason === "left") showNotice("notice.left");
    else if (KNOWN_ERRORS.has(reason) && reason !== "network") showError(reason); // removed, room_closed, unauthorized…
    else showError("error.lost");
  });
}

/** What the lesson lets us do changed: invited (publish now), or sent back (the server has ended
 *  our tracks already). */
function onGrants(r, grants) {
  const could = local.canPublish;
  local.canPublish = Boolean(grants.publish);
  renderPublishControls();
  if (local.canPublish && !could) {
    showNotice("notice.may_speak");
    startMedia(r);
  } else if (!local.canPublish && could) {
    showNotice("notice.sent_back");
  }
  renderLayout();
}

// -- participants and tracks ---------------------------------------------------------------------------

function addPeer(participant) {
  let peer = peers.get(participant.sid);
  if (peer) {
    peer.participant = participant;
    return peer;
  }
  const tile = ui.tileTemplate.content.firstElementChild.cloneNode(true);
  const name = participant.name || participant.identity || "?";
  tile.dataset.identity = participant.identity || "";
  tile.dataset.sid = participant.sid;
  tile.dataset.role = participant.role || "";
  tile.dataset.hasVideo = "false";
  tile.querySelector(".name").textContent = name;
  tile.querySelector(".avatar").dataset.initial = initial(name);
  setTitle(tile, "room.pin");
  for (const el of tile.querySelectorAll("[data-i18n]")) setText(el, el.dataset.i18n);
  for (const el of tile.querySelectorAll("[data-i18n-title]")) setTitle(el, el.dataset.i18nTitle);
  setQuality(tile.querySelector(".quality"), participant.quality || "excellent");
  const video = tile.querySelector("video");
  peer = {
    sid: participant.sid,
    participant,
    tile,
    video,
    camera: null, // {id, stream}
    screen: null, // {id, stream}
    audio: new Map(), // track id -> <audio>
    actions: "", // the tile's action buttons, as last drawn
  };
  const pin = () => {
    if (page === "box" || page === "lecturer") return; // nothing to pin to
    pinned = pinned === peer.sid ? null : peer.sid;
    renderLayout();
  };
  tile.addEventListener("click", pin);
  tile.addEventListener("keydown", (event) => {
    if (event.target === tile && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      pin();
    }
  });
  peers.set(participant.sid, peer);
  ui.grid.append(tile);
  return peer;
}

function removePeer(sid) {
  const peer = peers.get(sid);
  if (!peer) return;
  peers.delete(sid);
  for (const audio of peer.audio.values()) audio.srcObject = null;
  if (peer.camera) room?.unviewTrack(peer.camera.id, peer.video);
  peer.video.srcObject = null;
  peer.tile.remove();
  if (pinned === sid) pinned = null;
  if (speaker === sid) speaker = null;
}

function attachTrack(peer, info, track) {
  if (!track) return;
  if (info.kind === "audio") {
    let audio = peer.audio.get(info.id);
    if (!audio) {
      audio = document.createElement("audio");
      audio.autoplay = true;
      audio.dataset.track = info.id;
      peer.audio.set(info.id, audio);
      peer.tile.append(audio);
    }
    audio.srcObject = new MediaStream([track]);
    play(audio);
    return;
  }
  const entry = { id: info.id, stream: new MediaStream([track]) };
  if (info.source === "screen") {
    peer.screen = entry;
  } else {
    if (peer.camera) room?.unviewTrack(peer.camera.id, peer.video);
    peer.camera = entry;
    peer.video.srcObject = entry.stream;
    peer.tile.dataset.hasVideo = "true";
    play(peer.video);
    room?.viewTrack(info.id, peer.video); // the server sends the layer that fits the tile (none if hidden)
  }
}

function detachTrack(peer, info) {
  const audio = peer.audio.get(info.id);
  if (audio) {
    audio.srcObject = null;
    audio.remove();
    peer.audio.delete(info.id);
  }
  if (peer.screen?.id === info.id) peer.screen = null;
  if (peer.camera?.id === info.id) {
    room?.unviewTrack(info.id, peer.video);
    peer.camera = null;
    peer.video.srcObject = null;
    peer.tile.dataset.hasVideo = "false";
  }
}

function showMuted(peer, info) {
  if (info.source === "microphone") peer.tile.dataset.micMuted = String(Boolean(info.muted));
  if (info.source === "camera") peer.tile.dataset.cameraOff = String(Boolean(info.muted));
}

function setQuality(el, quality) {
  const q = ["excellent", "good", "poor", "lost"].includes(quality) ? quality : "good";
  el.dataset.quality = q;
  setTitle(el, `quality.${q}`);
}

// -- layout --------------------------------------------------------------------------------------------

function onStage(peer) {
  return Boolean(room && room.stage.includes(peer.participant.identity));
}

/** The fusion grid's large view: the pinned participant, else a screen share, else the last
 *  speaker, else anyone with a camera. */
function gridChoice() {
  if (pinned && peers.has(pinned)) return peers.get(pinned);
  for (const peer of peers.values()) if (peer.screen) return peer;
  if (speaker && peers.has(speaker)) return peers.get(speaker);
  for (const peer of peers.values()) if (peer.camera) return peer;
  return peers.values().next().value || null;
}

/** The large view of the lecture's pages (tutor, box, viewer): the lecture itself, its slides first,
 *  else whoever is on stage; a pinned tile wins on the pages of people who can click. */
function lectureChoice() {
  if (pinned && peers.has(pinned) && page !== "box") return peers.get(pinned);
  const all = [...peers.values()];
  const role = (peer) => peer.participant.role;
  const presenting = (peer) => LECTURE.has(role(peer)) || (page !== "tutor" && MODERATORS.has(role(peer)));
  return (
    all.find((p) => LECTURE.has(role(p)) && p.screen) ||
    all.find((p) => presenting(p) && p.screen) ||
    all.find((p) => LECTURE.has(role(p)) && p.camera) ||
    all.find((p) => presenting(p) && p.camera) ||
    all.find((p) => onStage(p) && (p.camera || p.screen)) ||
    all.find((p) => LECTURE.has(role(p))) ||
    null
  );
}

function mainChoice() {
  if (page === "grid") return gridChoice();
  if (page === "lecturer") return null; // the classrooms are the lecturer's view
  return lectureChoice();
}

/** Where a remote participant's tile goes on this page: the grid, the strip over the large view,
 *  the lecturer's on-stage row, or nowhere (its sound still plays). */
function placeOf(peer, main) {
  const p = peer.participant;
  const staged = onStage(peer);
  if (page === "grid") return "grid";
  if (page === "lecturer") {
    if (staged) return "onstage";
    return GRID_ROLES.has(p.role) || p.tracks.size > 0 ? "grid" : "hidden";
  }
  if (peer === main) return main.screen && main.camera ? "strip" : "hidden"; // slides large, face small
  if (staged) return "strip";
  if (page === "tutor") return p.role === "recorder" ? "hidden" : "grid";
  return MODERATORS.has(p.role) && peer.camera ? "strip" : "hidden";
}

function moveTile(tile, where, first = false) {
  const container = { grid: ui.grid, strip: ui.stageStrip, onstage: ui.onstageList }[where];
  tile.hidden = !container;
  if (!container) return;
  const inPlace = tile.parentElement === container && (!first || container.firstElementChild === tile);
  if (!inPlace) {
    if (first) container.prepend(tile);
    else container.append(tile);
  }
  const video = tile.querySelector("video");
  if (video && video.srcObject && video.paused) play(video);
}

function renderLayout() {
  const main = mainChoice();
  for (const peer of peers.values()) {
    moveTile(peer.tile, placeOf(peer, main));
    peer.tile.dataset.onStage = String(onStage(peer));
    renderTileActions(peer);
  }
  // our own picture: first in the grid, the lecturer's first on stage, a small self-view elsewhere
  const mine = { grid: "grid", tutor: "grid", lecturer: "onstage" }[page] || "strip";
  moveTile(ui.localTile, mine, mine !== "strip");
  ui.localTile.hidden = !local.canPublish;
  ui.localTile.dataset.onStage = String(Boolean(room?.local && room.stage.includes(room.local.identity)));
  renderStage(main);
  renderOnstage();
  renderTileBadges();
}

function renderStage(peer) {
  const entry = peer ? peer.screen || peer.camera : null;
  const stream = entry ? entry.stream : null;
  if (ui.stageVideo.srcObject !== stream) {
    if (stageTrack) room?.unviewTrack(stageTrack, ui.stageVideo);
    stageTrack = entry ? entry.id : null;
    ui.stageVideo.srcObject = stream;
    if (stream) play(ui.stageVideo);
    if (stageTrack) room?.viewTrack(stageTrack, ui.stageVideo); // the large view gets a large layer
  }
  ui.stage.dataset.sid = peer ? peer.sid : "";
  ui.stage.dataset.identity = peer ? peer.participant.identity || "" : "";
  ui.stage.dataset.source = entry ? (entry === peer.screen ? "screen" : "camera") : "";
  ui.stageEmpty.hidden = Boolean(stream);
  if (peer) {
    const name = peer.participant.name || peer.participant.identity || "";
    if (entry && entry === peer.screen) setText(ui.stageLabel, "room.screen", { name });
    else {
      delete ui.stageLabel.dataset.i18n;
      ui.stageLabel.textContent = name;
    }
    ui.stageLabel.hidden = false;
  } else {
    ui.stageLabel.hidden = true;
  }
  ui.stageStrip.dataset.count = String([...ui.stageStrip.children].filter((tile) => !tile.hidden).length);
  for (const other of peers.values()) {
    other.tile.classList.toggle("pinned", other.sid === pinned);
    other.tile.classList.toggle("on-stage", other === peer);
  }
}

function renderOnstage() {
  const staged = [...peers.values()].filter((peer) => onStage(peer)).length;
  ui.onstageCount.textContent = String(staged);
  ui.onstageEmpty.hidden = staged > 0;
  setText(ui.onstageEmpty, room?.kind === "live" ? "room.stage_empty_live" : "room.stage_empty");
}

/** The raised hands, on the tiles of those who raised them (moderators see the queue). */
function renderTileBadges() {
  const raised = new Set((room?.hands ?? []).map((hand) => hand.identity));
  for (const peer of peers.values()) peer.tile.dataset.hand = String(raised.has(peer.participant.identity));
}

// -- what a moderator does to a tile -----------------------------------------------------------------------

function microphoneOf(peer) {
  return [...peer.participant.tracks.values()].find((info) => info.source === "microphone") || null;
}

/** The buttons a tile gets on this page: the lecturer brings a classroom on stage and sends back;
 *  moderators mute the microphones in their reach (a tutor: its own classroom). */
function tileActions(peer) {
  const r = room;
  if (!r?.local || page === "box" || !r.grants.moderate || !MODERATORS.has(r.local.role)) return [];
  const p = peer.participant;
  const lecture = LECTURE.has(r.local.role);
  const mine = classroomOf(r.local);
  const inReach = lecture || p.identity === mine || (p.role === "student" && !onStage(peer));
  const actions = [];
  if (onStage(peer)) {
    if (lecture) actions.push(["send_back", "tile.send_back"]);
  } else if (lecture && r.kind !== "fusion" && p.role === "classroom") {
    actions.push(["stage", "tile.stage"]);
  } else if (inReach && (p.role === "student" || p.role === "viewer") && p.tracks.size > 0) {
    actions.push(["send_back", "tile.end_speaking"]);
  }
  const mic = microphoneOf(peer);
  if (mic && inReach && !LECTURE.has(p.role)) actions.push(mic.muted ? ["unmute", "tile.unmute"] : ["mute", "tile.mute"]);
  return actions;
}

function renderTileActions(peer) {
  const actions = tileActions(peer);
  const drawn = actions.map(([action]) => action).join();
  if (drawn === peer.actions) return;
  peer.actions = drawn;
  const holder = peer.tile.querySelector(".tile-actions");
  holder.replaceChildren(
    ...actions.map(([action, key]) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "tile-action";
      b.dataset.action = action;
      setText(b, key);
      b.addEventListener("click", (event) => {
        event.stopPropagation(); // not a click on the tile (pin)
        tileAction(peer, action, b);
      });
      return b;
    }),
  );
}

async function tileAction(peer, action, button) {
  const r = room;
  if (!r) return;
  const identity = peer.participant.identity;
  button.disabled = true;
  try {
    if (action === "stage") await r.setStage(identity, true);
    else if (action === "send_back") await r.sendBack(identity);
    else {
      const mic = microphoneOf(peer);
      if (mic) await r.muteTrack(mic.id, action === "mute");
    }
  } catch (err) {
    if (room === r) showError(codeOf(err) || "error.generic", err);
  } finally {
    button.disabled = false;
  }
}

// -- controls -----------------------------------------------------------------------------------------

function renderControl(button, source, onKey, offKey) {
  const on = source === "screen" ? Boolean(local.tracks.screen) : Boolean(local.tracks[source]) && !local.muted[source];
  button.dataset.state = on ? "on" : "off";
  button.setAttribute("aria-pressed", String(on));
  button.disabled = local.busy[source];
  setText(button.querySelector(".control-text"), on ? onKey : offKey);
}

function renderControls() {
  renderControl(ui.mic, "microphone", "controls.mic.on", "controls.mic.off");
  renderControl(ui.camera, "camera", "controls.camera.on", "controls.camera.off");
  renderControl(ui.screen, "screen", "controls.screen.on", "controls.screen.off");
  ui.localTile.dataset.micMuted = String(!local.tracks.microphone || local.muted.microphone);
  ui.localTile.dataset.cameraOff = String(!local.tracks.camera || local.muted.camera);
}

/** Camera, microphone and screen buttons for whoever may publish now (a box shares no screen). */
function renderPublishControls() {
  for (const button of [ui.mic, ui.camera]) button.hidden = !local.canPublish;
  ui.screen.hidden = !local.canPublish || page === "box";
  ui.leave.hidden = page === "box";
  ui.localTile.hidden = !local.canPublish;
}

async function toggle(source) {
  const r = room;
  if (!r || local.busy[source]) return;
  try {
    if (source === "screen") {
      if (local.tracks.screen) {
        local.busy.screen = true;
        renderControls();
        await r.unpublish("screen");
        setLocalTrack("screen", null);
      } else {
        await publish(r, "screen");
      }
    } else if (!local.tracks[source]) {
      await publish(r, source);
      if (["device_denied", "device_missing", "device_busy"].includes(ui.error.dataset.code)) {
        clearError();
      }
    } else {
      const muted = !local.muted[source];
      local.busy[source] = true;
      renderControls();
      await r.setMuted(source, muted);
      local.muted[source] = muted;
    }
  } catch (err) {
    if (room !== r) return;
    const code = codeOf(err);
    if (source === "screen") {
      // Cancelling the browser's "choose what to share" dialog is not an error worth a red box.
      if (code !== "device_denied") showError("error.screen_failed");
    } else {
      showError(code || "error.generic", err);
    }
  } finally {
    local.busy[source] = false;
    renderControls();
  }
}

/** Back to the join view (a box keeps its own screen); the Room is finished (left, removed,
 *  closed, or lost). */
function leaveClassroom(r, { keepView = false } = {}) {
  if (room !== r) return;
  room = null;
  entered = null;
  setJoining(false);
  lesson.detach();
  for (const sid of [...peers.keys()]) removePeer(sid);
  pinned = null;
  speaker = null;
  local.tracks = { camera: null, microphone: null, screen: null };
  local.muted = { camera: false, microphone: false };
  local.busy = { camera: false, microphone: false, screen: false };
  local.canPublish = false;
  ui.localVideo.srcObject = null;
  ui.enableAudio.hidden = true;
  renderStage(null);
  stageTrack = null;
  renderControls();
  renderPublishControls();
  if (!keepView) {
    ui.roomLabel.textContent = "";
    setView("join");
  }
  setBanner("closed");
}

async function leave() {
  const r = room;
  if (!r) return;
  ui.leave.disabled = true;
  try {
    await r.leave();
  } catch {
    // leaving anyway
  } finally {
    ui.leave.disabled = false;
  }
  if (room === r) {
    leaveClassroom(r);
    showNotice("notice.left");
  }
}

/** Out of the waiting room, back to the join view. */
async function leaveWaiting() {
  const r = room;
  if (!r) return;
  room = null;
  setJoining(false);
  await r.leave().catch(() => {});
  setView("join");
  setBanner("closed");
  showNotice("notice.left");
}

// -- join form -------------------------------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  const token = ui.token.value.trim();
  if (!token) {
    showError("error.need_token");
    ui.token.focus();
    return;
  }
  store(STORE_ROOM, ui.room.value.trim());
  store(STORE_NAME, ui.name.value.trim());
  await join(token, ui.room.value.trim() || tokenRoom(token));
}

async function quickJoin() {
  const roomName = ui.room.value.trim();
  const name = ui.name.value.trim();
  if (!roomName || !name) {
    showError("error.need_room_name");
    (roomName ? ui.name : ui.room).focus();
    return;
  }
  store(STORE_ROOM, roomName);
  store(STORE_NAME, name);
  clearError();
  setJoining(true);
  let token;
  try {
    const response = await fetch("dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ room: roomName, name }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    token = (await response.json()).token;
    if (typeof token !== "string" || !token) throw new Error("no token in the reply");
  } catch (err) {
    setJoining(false);
    showError("error.dev_token", err);
    return;
  }
  setJoining(false);
  await join(token, roomName);
}

async function detectDevMode() {
  try {
    const response = await fetch("healthz", { cache: "no-store" });
    const health = response.ok ? await response.json() : {};
    const dev = health && health.dev === true;
    ui.quickJoin.hidden = !dev;
    ui.quickHint.hidden = !dev;
  } catch {
    // no server answer: no quick join
  }
}

// -- start ----------------------------------------------------------------------------------------

function start() {
  languageMenu(ui.lang);

  ui.form.addEventListener("submit", submit);
  ui.quickJoin.addEventListener("click", quickJoin);
  ui.errorClose.addEventListener("click", clearError);
  ui.mic.addEventListener("click", () => toggle("microphone"));
  ui.camera.addEventListener("click", () => toggle("camera"));
  ui.screen.addEventListener("click", () => toggle("screen"));
  ui.leave.addEventListener("click", leave);
  ui.waitingLeave.addEventListener("click", leaveWaiting);
  ui.boxRejoin.addEventListener("click", () => {
    box.attempt = 0;
    join(box.token, box.roomName);
  });
  ui.enableAudio.addEventListener("click", () => {
    ui.enableAudio.hidden = true;
    for (const audio of document.querySelectorAll("audio")) play(audio);
  });
  window.addEventListener("pagehide", () => {
    if (room) room.leave().catch(() => {});
  });

  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  ui.room.value = params.get("room") || stored(STORE_ROOM);
  ui.name.value = params.get("name") || stored(STORE_NAME);
  ui.token.value = token;
  renderControls();
  setView("join");
  setBanner("new");
  detectDevMode();
  if (token) {
    // A link from the school system: join at once.
    if (params.get("room")) store(STORE_ROOM, params.get("room"));
    join(token, params.get("room") || tokenRoom(token));
  }
}

start();
