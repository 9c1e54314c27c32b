// The classroom page: join with a token (or a link carrying one), then see and hear the others.
//
// Talks to the server only through the SDK in kelian.js. All text comes from i18n.js. Hooks for
// tests: the Room is window.kelianRoom, body[data-view] is "join" or "classroom", body[data-state]
// is the Room's state, #error[data-code] the code of the error shown.

import { KelianError, Room } from "./kelian.js";
import { initialLanguage, language, setLanguage, setText, setTitle } from "./i18n.js";

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
  classroom: $("classroom"),
  stage: $("stage"),
  stageVideo: $("stage-video"),
  stageEmpty: $("stage-empty"),
  stageLabel: $("stage-label"),
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
]);

/** The one Room this page is in (or joining), else null. */
let room = null;
let joining = false;
/** sid -> the tile and streams of one remote participant. */
const peers = new Map();
let pinned = null; // sid the user clicked
let speaker = null; // sid of the last remote active speaker
let stageTrack = null; // id of the track on the large view

const local = {
  tracks: { camera: null, microphone: null, screen: null },
  muted: { camera: false, microphone: false },
  busy: { camera: false, microphone: false, screen: false },
  canPublish: false,
};

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
  setText(ui.errorText, key, key === "error.generic" || key === "error.dev_token" ? { message: messageOf(err) } : {});
  ui.error.dataset.code = code;
  ui.error.hidden = false;
}

function clearError() {
  ui.error.hidden = true;
  delete ui.error.dataset.code;
  ui.errorText.textContent = "";
  delete ui.errorText.dataset.i18n;
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

/** The room a token names, for display only (the server checks the signature, not us). */
function tokenRoom(token) {
  try {
    const b64 = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const room = JSON.parse(new TextDecoder().decode(bytes)).room;
    return typeof room === "string" ? room : "";
  } catch {
    return "";
  }
}

// -- views ---------------------------------------------------------------------------------------------

function setView(view) {
  document.body.dataset.view = view;
  ui.joinView.hidden = view !== "join";
  ui.classroom.hidden = view !== "classroom";
}

function setJoining(on) {
  joining = on;
  ui.joining.hidden = !on;
  ui.join.disabled = on;
  ui.quickJoin.disabled = on;
}

function setBanner(state) {
  document.body.dataset.state = state;
  if (state === "reconnecting" || (state === "connecting" && document.body.dataset.view === "classroom")) {
    setText(ui.banner, `state.${state}`);
    ui.banner.dataset.state = state;
    ui.banner.hidden = false;
  } else {
    ui.banner.hidden = true;
  }
}

// -- joining ------------------------------------------------------------------------------------------

async function join(token, roomName) {
  if (joining || room) return;
  clearError();
  ui.notice.hidden = true;
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
      showError(codeOf(err) || "network", err);
    }
    return;
  }
  if (room !== r) return; // gave up (disconnected) while connecting
  setJoining(false);
  enterClassroom(r, roomName || tokenRoom(token));
  await startMedia(r);
}

function enterClassroom(r, roomName) {
  ui.roomLabel.textContent = roomName || "";
  const me = r.local || {};
  ui.localTile.dataset.identity = me.identity || "";
  ui.localTile.dataset.sid = me.sid || "";
  const nameEl = ui.localTile.querySelector(".name");
  if (me.name) {
    delete nameEl.dataset.i18n;
    nameEl.textContent = me.name;
  } else {
    setText(nameEl, "room.you");
  }
  ui.localTile.querySelector(".avatar").dataset.initial = initial(me.name || me.identity);
  local.canPublish = Boolean(me.grants ? me.grants.publish : true);
  for (const button of [ui.mic, ui.camera, ui.screen]) button.hidden = !local.canPublish;
  ui.localTile.hidden = !local.canPublish;
  renderControls();
  setView("classroom");
  setBanner(r.state || "connected");
  for (const participant of r.participants.values()) {
    if (isLocal(r, participant)) continue;
    const peer = addPeer(participant);
    for (const info of participant.tracks?.values() ?? []) {
      if (info.track) attachTrack(peer, info, info.track);
      showMuted(peer, info);
    }
  }
  renderStage();
}

async function startMedia(r) {
  if (!local.canPublish) {
    showNotice("notice.viewer");
    return;
  }
  let problem = null;
  for (const source of ["camera", "microphone"]) {
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

  on("participant_joined", (participant) => {
    if (!isLocal(r, participant)) addPeer(participant);
    renderStage();
  });

  on("participant_left", (participant) => {
    removePeer(participant.sid);
    renderStage();
  });

  on("track_subscribed", (participant, info, track) => {
    if (isLocal(r, participant)) return;
    const peer = addPeer(participant);
    attachTrack(peer, info, track || info.track);
    showMuted(peer, info);
    renderStage();
  });

  on("track_unsubscribed", (participant, info) => {
    const peer = peers.get(participant.sid);
    if (!peer) return;
    detachTrack(peer, info);
    renderStage();
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
    if (peer) showMuted(peer, info);
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
      renderStage();
    }
  });

  on("quality", (participant, quality) => {
    const tile = isLocal(r, participant) ? ui.localTile : peers.get(participant.sid)?.tile;
    if (tile) setQuality(tile.querySelector(".quality"), quality);
  });

  on("local_track", (source, track) => setLocalTrack(source, track));

  on("local_track_ended", (source) => {
    setLocalTrack(source, null);
    if (source === "screen") showNotice("notice.screen_ended");
  });

  on("disconnected", (reason) => {
    if (joining) return; // connect() rejects too, with the more precise reason
    leaveClassroom(r);
    if (reason === "left") showNotice("notice.left");
    else if (KNOWN_ERRORS.has(reason) && reason !== "network") showError(reason); // removed, room_closed, unauthorized…
    else showError("error.lost");
  });
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
  };
  const pin = () => {
    pinned = pinned === peer.sid ? null : peer.sid;
    renderStage();
  };
  tile.addEventListener("click", pin);
  tile.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
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
    room?.viewTrack(info.id, peer.video); // the server sends the layer that fits the tile
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

/** Who is on the large view: the pinned participant, else a screen share, else the last speaker. */
function stageChoice() {
  if (pinned && peers.has(pinned)) return peers.get(pinned);
  for (const peer of peers.values()) if (peer.screen) return peer;
  if (speaker && peers.has(speaker)) return peers.get(speaker);
  for (const peer of peers.values()) if (peer.camera) return peer;
  return peers.values().next().value || null;
}

function renderStage() {
  const peer = stageChoice();
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
  for (const other of peers.values()) {
    other.tile.classList.toggle("pinned", other.sid === pinned);
    other.tile.classList.toggle("on-stage", other === peer);
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

/** Back to the join view; the Room is finished (left, removed, closed, or lost). */
function leaveClassroom(r) {
  if (room !== r) return;
  room = null;
  setJoining(false);
  for (const sid of [...peers.keys()]) removePeer(sid);
  pinned = null;
  speaker = null;
  stageTrack = null;
  local.tracks = { camera: null, microphone: null, screen: null };
  local.muted = { camera: false, microphone: false };
  local.busy = { camera: false, microphone: false, screen: false };
  ui.localVideo.srcObject = null;
  ui.enableAudio.hidden = true;
  ui.roomLabel.textContent = "";
  renderStage();
  renderControls();
  setView("join");
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
  setLanguage(initialLanguage(), false);
  ui.lang.value = language();
  ui.lang.addEventListener("change", () => setLanguage(ui.lang.value));

  ui.form.addEventListener("submit", submit);
  ui.quickJoin.addEventListener("click", quickJoin);
  ui.errorClose.addEventListener("click", clearError);
  ui.mic.addEventListener("click", () => toggle("microphone"));
  ui.camera.addEventListener("click", () => toggle("camera"));
  ui.screen.addEventListener("click", () => toggle("screen"));
  ui.leave.addEventListener("click", leave);
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
