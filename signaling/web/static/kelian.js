// kelian.js: the browser client of a kelian room. A plain ES module, no build step, no dependencies.
//
//   import { Room } from "/static/kelian.js";
//   const room = new Room({ token });
//   room.on("track_subscribed", (participant, info, track) => attach(track));
//   await room.connect();
//   await room.publishCamera({ simulcast: true });
//
// The lesson (docs/protocol.md, "The lesson") is kept here too, so that a page reads state rather
// than messages. What it keeps, and the event that says it changed:
//   room.grants            "permissions" (grants, by)   what we may do now: a student publishes once invited
//   room.hand              "hand" (hand, by)            our own hand: {raised, position}
//   room.invitation        "invitation" (inv or null)   {to: "speak"|"stage", by} until we answer
//   room.hands             "hands" (queue)              moderators: the raised hands in reach
//   room.waiting           "waiting_list" (list)        the lecture: who waits at the door
//   room.chat              "chat" (message), "chat_deleted" (id, by)
//   room.questions         "question" (question)        asked, answered, dismissed, passed up
//   room.stage             "stage" (stage, identity, on)
//   room.locked            "room_locked" (locked, by)
//   room.participantCount  "participant_count" (count)
// Moderators also get "invitation_answered" ({identity, to, accepted}). In a room with a waiting
// room, connect() resolves once a teacher admits us ("waiting_room" ({room, position}) meanwhile,
// state "waiting"). "lesson" follows every join, resume and admission: all of it may have changed.
//
// Two RTCPeerConnections, as mediasoup-client and LiveKit do: one we publish on (we offer, the
// server answers) and one we receive on (the server offers whenever the room's tracks change).
// The protocol is in docs/protocol.md. Reconnection is the SDK's job, not the page's: when the
// WebSocket drops, the session is resumed (media never stopped); when the media path fails or the
// server has forgotten us, we join again with the same identity and publish the same tracks.

const PING_INTERVAL_MS = 5000;
const SILENCE_LIMIT_MS = 12000; // no message (not even a pong) for this long: the socket is dead
const MEDIA_FAILED_MS = 5000; // a PeerConnection "disconnected" this long counts as failed
const RECONNECT_DELAYS_MS = [0, 300, 700, 1500, 2500, 4000, 4000, 5000, 5000, 5000]; // about 28 s in all
const REQUEST_TIMEOUT_MS = 10000;
const CHAT_KEPT = 200; // as many as the server keeps
// A reconnection stops for good on these: trying again cannot help.
const FINAL_ERRORS = ["unauthorized", "forbidden", "room_full", "room_closed", "room_locked", "denied"];

// Simulcast layers low to high, as rid q/h/f: a quarter, half and full resolution.
const SIMULCAST = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

export class KelianError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "KelianError";
    this.code = code;
  }
}

class Emitter {
  #handlers = new Map();
  on(event, handler) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return this;
  }
  off(event, handler) {
    this.#handlers.get(event)?.delete(handler);
    return this;
  }
  emit(event, ...args) {
    for (const handler of this.#handlers.get(event) ?? []) {
      try {
        handler(...args);
      } catch (err) {
        console.error(`kelian: "${event}" handler failed`, err);
      }
    }
  }
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function deviceError(err, what) {
  if (!globalThis.isSecureContext) {
    return new KelianError("insecure_page", `the ${what} needs a secure page: open kelian over https (or on localhost)`);
  }
  if (err?.name === "NotAllowedError" || err?.name === "SecurityError") {
    return new KelianError("device_denied", `permission to use the ${what} was denied`);
  }
  if (err?.name === "NotFoundError" || err?.name === "OverconstrainedError") {
    return new KelianError("device_missing", `no ${what} was found`);
  }
  if (err?.name === "NotReadableError") {
    return new KelianError("device_busy", `the ${what} is in use by another program`);
  }
  return new KelianError("device_error", `the ${what} could not be opened: ${err?.message ?? err}`);
}

/** One WebSocket with request/response by id; every other message goes to onMessage. */
class Signal {
  constructor(url, onMessage, onClose) {
    this.url = url;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.pending = new Map();
    this.nextId = 1;
    this.lastHeard = Date.now();
    this.closedByUs = false;
  }

  open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url, "kelian.v1.json");
      } catch (err) {
        reject(new KelianError("network", `cannot open ${this.url}: ${err.message}`));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        this.lastHeard = Date.now();
        this.pinger = setInterval(() => this.#keepAlive(), PING_INTERVAL_MS);
        resolve();
      };
      ws.onmessage = (event) => this.#receive(event.data);
      ws.onclose = (event) => {
        clearInterval(this.pinger);
        const error = new KelianError("network", "the connection to the server was lost");
        for (const { reject: fail, timer } of this.pending.values()) {
          clearTimeout(timer);
          fail(error);
        }
        this.pending.clear();
        reject(new KelianError("network", "the server cannot be reached"));
        if (!this.closedByUs) this.onClose(event);
      };
    });
  }

  #keepAlive() {
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.ws.close(); // onclose starts the reconnection
      return;
    }
    this.send({ type: "ping" });
  }

  #receive(data) {
    this.lastHeard = Date.now();
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      console.warn("kelian: ignoring a message that is not JSON");
      return;
    }
    const waiter = message.id !== undefined && this.pending.get(message.id);
    if (waiter) {
      this.pending.delete(message.id);
      clearTimeout(waiter.timer);
      if (message.type === "error") waiter.reject(new KelianError(message.code, message.message));
      else waiter.resolve(message);
      return;
    }
    this.onMessage(message);
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  request(message) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.ws?.readyState !== WebSocket.OPEN) {
        reject(new KelianError("network", "not connected to the server"));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new KelianError("timeout", `no reply to "${message.type}"`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...message, id }));
    });
  }

  close() {
    this.closedByUs = true;
    clearInterval(this.pinger);
    if (this.ws) this.ws.onmessage = null; // a replaced socket's last words are not for us
    this.ws?.close();
  }
}

export class Room extends Emitter {
  constructor({ token, url } = {}) {
    super();
    if (!token) throw new KelianError("unauthorized", "a token is required");
    this.token = token;
    this.url = url ?? defaultUrl();
    this.state = "new";
    this.local = null;
    this.participants = new Map(); // sid -> {sid, identity, name, role, quality, tracks: Map id -> info}
    this.publisherPc = null;
    this.subscriberPc = null;
    this.activeSpeakers = [];
    this.participantCount = 0; // everyone in the room; in a live room more than `participants` shows
    this.stage = []; // identities on stage
    this.kind = null; // fusion, dual_teacher or live, once joined: who watches whom
    this.locked = false; // a locked room lets in only moderators and those who have been in
    this.waitingRoom = false; // the room holds students and viewers at the door until admitted
    this.hand = { raised: false, position: null }; // our own hand; position from 1, when known
    this.invitation = null; // {to: "speak"|"stage", by} while an invitation waits for our answer
    this.hands = []; // moderators: the raised hands in reach, first come first
    this.waiting = []; // the lecture: who waits at the door
    this.chat = []; // the chat messages we may read, oldest first
    this.questions = new Map(); // id -> every question we may see, in the order asked
    this.admission = null; // {resolve, reject} while we wait in the waiting room
    this.localTracks = new Map(); // source -> {track, transceiver, trackId, muted, simulcast}
    this.signal = null;
    this.remoteMids = {}; // subscriber mid -> track id, from the server's last offer
    this.orphanTracks = new Map(); // track id -> MediaStreamTrack that arrived before its announcement
    this.queue = Promise.resolve(); // publish negotiations, one at a time
    this.answering = Promise.resolve(); // subscriber negotiations, one at a time
    this.mediaTimer = null;
    this.reconnecting = null;
    this.views = new Map(); // track id -> Set of elements showing it (adaptive stream)
    this.viewSent = new Map(); // track id -> the settings last sent, as a string
    this.viewTimer = null;
    this.resizes = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => this.#scheduleViews());
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  /** What this session may do now: the lesson changes it (an invitation, sending back). */
  get grants() {
    return this.local?.grants ?? { publish: false, subscribe: false, publish_data: false, moderate: false, admin: false };
  }

  #request(message) {
    if (!this.signal) return Promise.reject(new KelianError("network", "not connected to the server"));
    return this.signal.request(message);
  }

  // -- joining and leaving --------------------------------------------------------------------------

  async connect() {
    if (this.state !== "new" && this.state !== "closed") throw new KelianError("state", "already connected");
    this.#setState("connecting");
    try {
      await this.#join(null);
    } catch (err) {
      this.#teardown();
      this.#setState("closed");
      throw err;
    }
    this.#setState("connected");
    return this;
  }

  /** Open a socket and join; with `resume`, ask to continue that session. Returns the joined reply,
   *  after the waiting room if the room holds us there (state "waiting", event "waiting_room"). */
  async #join(resume) {
    const signal = new Signal(
      this.url,
      (message) => this.#onMessage(message),
      () => {
        if (this.admission) this.admission.reject(new KelianError("network", "the connection to the server was lost"));
        else this.#lost("the connection to the server was lost");
      },
    );
    await signal.open();
    this.signal?.close();
    this.signal = signal;
    const message = { type: "join", token: this.token };
    if (resume) message.resume = resume;
    let joined;
    try {
      joined = await signal.request(message);
      if (joined.type === "waiting_room") joined = await this.#waitAdmitted(joined);
    } catch (err) {
      signal.close();
      throw err;
    }
    this.#applyJoined(joined);
    return joined;
  }

  /** The room holds us at the door: a later, unsolicited "joined" is the reply to our join, and
   *  "disconnected" (denied, room_closed, replaced) the refusal. No timeout: a lesson may start late. */
  #waitAdmitted(reply) {
    this.#setState("waiting");
    this.emit("waiting_room", { room: reply.room, position: reply.position });
    return new Promise((resolve, reject) => {
      this.admission = { resolve, reject };
    }).finally(() => {
      this.admission = null;
    });
  }

  /** Our session and the room as `joined` describes them (a first join, a resume, an admission). */
  #applyJoined(joined) {
    this.local = { ...joined.participant, grants: joined.grants };
    // sent back while we were away (a resume): the server has ended our tracks, and we missed it
    if (!joined.grants?.publish) for (const source of [...this.localTracks.keys()]) this.#dropLocal(source, "revoked");
    const room = joined.room;
    this.kind = room.kind ?? "fusion";
    this.participantCount = room.participant_count ?? room.participants.length;
    this.stage = room.stage ?? [];
    this.locked = Boolean(room.locked);
    this.waitingRoom = Boolean(room.waiting_room);
    const lesson = joined.lesson ?? {};
    const raised = Boolean(lesson.hand_raised);
    this.hand = { raised, position: raised ? this.hand.position : null };
    this.invitation = lesson.invitation ?? null;
    this.hands = lesson.hands ?? [];
    this.waiting = lesson.waiting ?? [];
    this.chat = lesson.chat ?? [];
    this.questions = new Map((lesson.questions ?? []).map((q) => [q.id, q]));
    this.#syncParticipants(room.participants);
    this.emit("lesson");
  }

  /** Leave the room for good (or the waiting room). */
  async leave() {
    if (this.state === "closed") return;
    try {
      await this.signal?.request({ type: "leave" });
    } catch {
      // leaving anyway
    }
    this.#close("left");
  }

  #close(reason) {
    this.admission?.reject(new KelianError(reason, "left the waiting room"));
    this.#teardown();
    for (const { track } of this.localTracks.values()) track.stop();
    this.localTracks.clear();
    for (const participant of this.participants.values()) this.emit("participant_left", participant, reason);
    this.participants.clear();
    this.#setState("closed");
    this.emit("disconnected", reason);
  }

  #teardown() {
    this.signal?.close();
    this.signal = null;
    clearTimeout(this.mediaTimer);
    this.publisherPc?.close();
    this.subscriberPc?.close();
    this.publisherPc = this.subscriberPc = null;
  }

  // -- reconnection ---------------------------------------------------------------------------------

  /** Something broke; resume or rejoin in the background, at most once at a time. */
  #lost(why, { media = false } = {}) {
    if (this.state !== "connected" || this.reconnecting) return; // connect() reports its own failures
    console.warn(`kelian: ${why}; reconnecting`);
    this.#setState("reconnecting");
    this.reconnecting = this.#reconnect(media).finally(() => {
      this.reconnecting = null;
    });
  }

  async #reconnect(mediaFailed) {
    for (const delay of RECONNECT_DELAYS_MS) {
      if (this.state === "closed") return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      try {
        if (!mediaFailed) {
          const joined = await this.#join(this.local?.sid);
          if (joined.resumed) {
            this.#setState("connected");
            return;
          }
        } else {
          await this.#join(null);
        }
        await this.#restartMedia();
        this.#setState("connected");
        return;
      } catch (err) {
        if (FINAL_ERRORS.includes(err.code)) {
          this.#close(err.code);
          return;
        }
        mediaFailed = mediaFailed || err.code !== "network";
      }
    }
    this.#close("network");
  }

  /** A fresh session: new PeerConnections, the same local tracks published again. */
  async #restartMedia() {
    const old = this.localTracks;
    this.publisherPc?.close();
    this.subscriberPc?.close();
    this.publisherPc = this.subscriberPc = null;
    this.localTracks = new Map();
    for (const participant of this.participants.values()) {
      for (const info of participant.tracks.values()) info.track = null;
    }
    for (const [source, entry] of old) {
      if (entry.track.readyState === "ended") continue;
      if (!this.grants.publish) {
        // the lesson took publishing away while we were gone (sent back): nothing to send again
        entry.track.stop();
        this.emit("local_track_ended", source, "revoked");
        continue;
      }
      await this.#publish(source, entry.track, { simulcast: entry.simulcast });
      if (entry.muted) await this.setMuted(source, true);
    }
  }

  #watchMedia(pc) {
    pc.addEventListener("connectionstatechange", () => {
      clearTimeout(this.mediaTimer);
      if (pc !== this.publisherPc && pc !== this.subscriberPc) return;
      if (pc.connectionState === "failed") this.#lost("the media connection failed", { media: true });
      else if (pc.connectionState === "disconnected") {
        this.mediaTimer = setTimeout(() => {
          if (pc.connectionState === "disconnected") this.#lost("the media connection dropped", { media: true });
        }, MEDIA_FAILED_MS);
      }
    });
  }

  // -- server messages ------------------------------------------------------------------------------

  #onMessage(message) {
    switch (message.type) {
      case "offer":
        this.answering = this.answering.then(() => this.#answer(message)).catch((err) => {
          console.error("kelian: subscriber negotiation failed", err);
          this.#lost("subscriber negotiation failed", { media: true });
        });
        break;
      case "participant_joined":
        this.#addParticipant(message.participant);
        break;
      case "participant_left":
        this.#removeParticipant(message.sid, message.reason);
        break;
      case "track_published":
        this.#addTrack(message.track);
        break;
      case "track_unpublished":
        this.#removeTrack(message.track);
        break;
      case "track_muted":
        this.#trackMuted(message.track);
        break;
      case "active_speakers":
        this.activeSpeakers = message.speakers.map((s) => s.sid);
        this.emit("active_speakers", this.activeSpeakers);
        break;
      case "connection_quality":
        for (const update of message.updates) {
          const participant = update.sid === this.local?.sid ? this.local : this.participants.get(update.sid);
          if (!participant) continue;
          participant.quality = update.quality;
          this.emit("quality", participant, update.quality);
        }
        break;
      case "transport_closed":
        this.#lost(`the server closed our ${message.transport} transport`, { media: true });
        break;
      case "disconnected":
        if (this.admission) {
          // turned away at the door (denied, room_closed, replaced): connect() rejects with it
          this.admission.reject(new KelianError(message.reason ?? "denied", `not admitted: ${message.reason}`));
          break;
        }
        this.#close(message.reason ?? "removed");
        break;
      case "layers":
        this.#applyLayers(message.track, message.active);
        break;
      case "participant_count":
        this.participantCount = message.count;
        this.emit("participant_count", message.count);
        break;
      case "stage":
        this.stage = message.stage;
        this.emit("stage", message.stage, message.identity, message.on);
        break;
      case "joined": // admitted from the waiting room: the reply to our join, at last
        this.admission?.resolve(message);
        break;
      case "permissions":
        this.#setGrants(message.grants, message.by ?? null);
        break;
      case "hands":
        this.hands = message.queue ?? [];
        this.emit("hands", this.hands);
        break;
      case "hand": // a moderator lowered our hand
        this.hand = { raised: Boolean(message.raised), position: message.raised ? (message.position ?? null) : null };
        this.emit("hand", this.hand, message.by ?? null);
        break;
      case "invitation":
        this.invitation = { to: message.to, by: message.by ?? null };
        this.emit("invitation", this.invitation);
        break;
      case "invitation_answered":
        this.emit("invitation_answered", { identity: message.identity, to: message.to, accepted: message.accepted });
        break;
      case "waiting_list":
        this.waiting = message.waiting ?? [];
        this.emit("waiting_list", this.waiting);
        break;
      case "room_locked":
        this.locked = Boolean(message.locked);
        this.emit("room_locked", this.locked, message.by ?? null);
        break;
      case "chat":
        this.#addChat(message.message);
        break;
      case "chat_deleted":
        this.#removeChat(message.message, message.by ?? null);
        break;
      case "question":
        this.#setQuestion(message.question);
        break;
      case "track_unsupported": {
        // This browser turned the track's codec down: the server sends nothing for it.
        const participant = this.participants.get(message.track.participant);
        if (participant) this.emit("track_unsupported", participant, message.track, message.codec);
        break;
      }
      case "error":
        this.emit("error", new KelianError(message.code, message.message));
        break;
      default:
        break; // pong, and anything newer than this SDK
    }
  }

  #syncParticipants(list) {
    const present = new Set();
    for (const info of list) {
      if (info.sid === this.local.sid) continue;
      present.add(info.sid);
      const known = this.participants.get(info.sid);
      if (!known) this.#addParticipant(info);
      else {
        const tracks = new Set(info.tracks.map((t) => t.id));
        for (const track of known.tracks.values()) if (!tracks.has(track.id)) this.#removeTrack(track);
        for (const track of info.tracks) this.#addTrack(track);
      }
    }
    for (const sid of [...this.participants.keys()]) {
      if (!present.has(sid)) this.#removeParticipant(sid, "left");
    }
  }

  #addParticipant(info) {
    if (info.sid === this.local?.sid || this.participants.has(info.sid)) return;
    const participant = {
      sid: info.sid,
      identity: info.identity,
      name: info.name,
      role: info.role,
      quality: info.quality ?? "excellent",
      tracks: new Map(),
    };
    this.participants.set(info.sid, participant);
    this.emit("participant_joined", participant);
    for (const track of info.tracks ?? []) this.#addTrack(track);
  }

  #removeParticipant(sid, reason) {
    const participant = this.participants.get(sid);
    if (!participant) return;
    for (const info of [...participant.tracks.values()]) this.#removeTrack(info);
    this.participants.delete(sid);
    this.emit("participant_left", participant, reason);
  }

  #addTrack(track) {
    const participant = this.participants.get(track.participant);
    if (!participant || participant.tracks.has(track.id)) return;
    const info = {
      id: track.id,
      kind: track.kind,
      source: track.source,
      muted: Boolean(track.muted),
      track: null,
    };
    participant.tracks.set(track.id, info);
    const arrived = this.orphanTracks.get(track.id);
    if (arrived) {
      this.orphanTracks.delete(track.id);
      info.track = arrived;
      this.emit("track_subscribed", participant, info, arrived);
    }
  }

  #removeTrack(track) {
    const participant = this.participants.get(track.participant);
    const info = participant?.tracks.get(track.id);
    if (!info) return;
    participant.tracks.delete(track.id);
    this.emit("track_unsubscribed", participant, info);
  }

  #trackMuted(track) {
    if (track.participant === this.local?.sid) {
      const entry = [...this.localTracks.values()].find((e) => e.trackId === track.id);
      if (!entry) return;
      entry.muted = track.muted;
      entry.track.enabled = !track.muted;
      this.emit("track_muted", this.local, { id: track.id, kind: track.kind, source: track.source, muted: track.muted });
      return;
    }
    const participant = this.participants.get(track.participant);
    const info = participant?.tracks.get(track.id);
    if (!info) return;
    info.muted = track.muted;
    this.emit("track_muted", participant, info);
  }

  // -- receiving ------------------------------------------------------------------------------------

  async #answer(message) {
    if (!this.subscriberPc) {
      const pc = (this.subscriberPc = new RTCPeerConnection({ bundlePolicy: "max-bundle" }));
      this.#watchMedia(pc);
      pc.ontrack = (event) => this.#onTrack(pc, event);
    }
    this.remoteMids = message.tracks ?? {};
    const pc = this.subscriberPc;
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.signal.send({ type: "answer", sdp: pc.localDescription.sdp });
  }

  #onTrack(pc, event) {
    if (pc !== this.subscriberPc) return;
    const trackId = this.remoteMids[event.transceiver.mid];
    if (!trackId) return;
    for (const participant of this.participants.values()) {
      const info = participant.tracks.get(trackId);
      if (info) {
        info.track = event.track;
        this.emit("track_subscribed", participant, info, event.track);
        return;
      }
    }
    this.orphanTracks.set(trackId, event.track);
  }

  // -- publishing -----------------------------------------------------------------------------------

  async publishCamera({ simulcast = false, width = 1280, height = 720, frameRate = 30 } = {}) {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: frameRate } },
      });
    } catch (err) {
      throw deviceError(err, "camera");
    }
    return this.#publish("camera", stream.getVideoTracks()[0], { simulcast });
  }

  async publishMicrophone() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      throw deviceError(err, "microphone");
    }
    return this.#publish("microphone", stream.getAudioTracks()[0], {});
  }

  async publishScreen() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    } catch (err) {
      throw deviceError(err, "screen");
    }
    const track = stream.getVideoTracks()[0];
    track.contentHint = "detail"; // text on slides stays sharp rather than smooth
    return this.#publish("screen", track, {});
  }

  /** Publish an existing MediaStreamTrack (a canvas, a file, another device) as `source`. */
  publishTrack(source, track, options = {}) {
    return this.#publish(source, track, options);
  }

  #publish(source, track, { simulcast = false }) {
    const run = async () => {
      if (!this.local?.grants?.publish) throw new KelianError("forbidden", "this token may not publish");
      if (this.localTracks.has(source)) await this.#unpublishNow(source);
      if (!this.publisherPc) {
        this.publisherPc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
        this.#watchMedia(this.publisherPc);
      }
      const init = { direction: "sendonly", streams: [] };
      if (simulcast && track.kind === "video") init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
      const transceiver = this.publisherPc.addTransceiver(track, init);
      const entry = { track, transceiver, trackId: null, muted: false, simulcast };
      this.localTracks.set(source, entry);
      track.addEventListener("ended", () => {
        if (this.localTracks.get(source) === entry) {
          this.unpublish(source).catch(() => {});
          this.emit("local_track_ended", source);
        }
      });
      const tracks = await this.#negotiate();
      entry.trackId = tracks.find((t) => t.source === source)?.id ?? null;
      this.emit("local_track", source, track);
      return track;
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  async #negotiate() {
    const pc = this.publisherPc;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const sources = {};
    for (const [source, entry] of this.localTracks) {
      if (entry.transceiver.mid !== null) sources[entry.transceiver.mid] = source;
    }
    const reply = await this.signal.request({ type: "publish", sdp: pc.localDescription.sdp, sources });
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    return reply.tracks;
  }

  async unpublish(source) {
    const run = () => this.#unpublishNow(source);
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  async #unpublishNow(source) {
    const entry = this.localTracks.get(source);
    if (!entry) return;
    this.localTracks.delete(source);
    entry.track.stop();
    if (entry.trackId) {
      try {
        await this.signal?.request({ type: "unpublish", track: entry.trackId });
      } catch (err) {
        if (err.code !== "not_found") throw err;
      }
    }
    // No renegotiation: the server has closed the Producer; the next offer shows the section inactive.
    await entry.transceiver.sender.replaceTrack(null);
    entry.transceiver.direction = "inactive";
  }

  /** Mute or unmute a published camera or microphone; everyone sees the state, nothing is forwarded. */
  async setMuted(source, muted) {
    const entry = this.localTracks.get(source);
    if (!entry) throw new KelianError("not_found", `nothing is published as ${source}`);
    entry.muted = muted;
    entry.track.enabled = !muted;
    if (entry.trackId) await this.signal.request({ type: "mute", track: entry.trackId, muted });
  }

  /** A local track the server no longer takes: stop it here too, without asking the server. Through
   *  the publish queue, so it does not cross a negotiation. */
  #dropLocal(source, reason) {
    const run = async () => {
      const entry = this.localTracks.get(source);
      if (!entry) return;
      this.localTracks.delete(source);
      entry.track.stop();
      await entry.transceiver.sender.replaceTrack(null).catch(() => {});
      try {
        entry.transceiver.direction = "inactive";
      } catch {
        // the connection is closed already
      }
      this.emit("local_track_ended", source, reason);
    };
    this.queue = this.queue.then(run, run).catch(() => {});
  }

  #setGrants(grants, by) {
    if (!this.local || !grants) return;
    this.local.grants = grants;
    if (!grants.publish) for (const source of [...this.localTracks.keys()]) this.#dropLocal(source, "revoked");
    this.emit("permissions", grants, by);
  }

  /** Moderators (lecturer, tutor): mute or unmute anyone's track, by its id. */
  async muteTrack(trackId, muted) {
    await this.#request({ type: "mute", track: trackId, muted });
  }

  /** Moderators: send a participant away (every session of that identity). */
  async removeParticipant(identity) {
    await this.#request({ type: "remove", identity });
  }

  /** The lecturer: bring a participant on stage (everyone watches it) or send it back. */
  async setStage(identity, on) {
    return (await this.#request({ type: "stage", identity, on })).stage;
  }

  /** Receive (or stop receiving) a track, by its id, or every track of a participant, by its sid:
   *  what the room's kind lets this participant watch, narrowed to what its layout shows. */
  async subscribe(target, subscribed = true) {
    const key = this.participants.has(target) ? "participant" : "track";
    return (await this.#request({ type: subscribed ? "subscribe" : "unsubscribe", [key]: target })).tracks;
  }

  async unsubscribe(target) {
    return this.subscribe(target, false);
  }

  // -- the lesson: hands, invitations, moderation, the waiting room (docs/protocol.md, "The lesson") --

  /** Put our hand up; our place in the queue (from 1). Raising again keeps the place. */
  async raiseHand() {
    const reply = await this.#request({ type: "raise_hand" });
    this.hand = { raised: true, position: reply.position ?? null };
    this.emit("hand", this.hand, null);
    return this.hand.position;
  }

  /** Lower our own hand, or (moderators) someone else's, by identity. */
  async lowerHand(identity) {
    const own = !identity || identity === this.local?.identity;
    await this.#request(own ? { type: "lower_hand" } : { type: "lower_hand", identity });
    if (own) {
      this.hand = { raised: false, position: null };
      this.emit("hand", this.hand, null);
    }
  }

  /** Moderators: invite a participant to speak (it may publish), or (the lecturer) on stage. */
  async invite(identity, to = "speak") {
    await this.#request({ type: "invite", identity, to });
  }

  /** Accept the invitation we were sent: we may publish now (and are on stage, for "stage"). */
  async acceptInvitation() {
    return this.#answerInvitation(true);
  }

  async declineInvitation() {
    return this.#answerInvitation(false);
  }

  async #answerInvitation(accept) {
    let reply;
    try {
      reply = await this.#request({ type: accept ? "accept_invitation" : "decline_invitation" });
    } catch (err) {
      if (err.code === "unexpected") this.#clearInvitation(); // withdrawn meanwhile (sent back)
      throw err;
    }
    this.#clearInvitation();
    if (accept) {
      if (reply.grants) this.#setGrants(reply.grants, null);
      this.hand = { raised: false, position: null }; // accepting takes the hand down
      this.emit("hand", this.hand, null);
    }
    return reply.to;
  }

  #clearInvitation() {
    if (this.invitation === null) return;
    this.invitation = null;
    this.emit("invitation", null);
  }

  /** Off stage, hand down, and back to what its role may do when it joins (a student stops
   *  publishing). The lecturer for someone on stage; moderators in reach otherwise. */
  async sendBack(identity) {
    await this.#request({ type: "send_back", identity });
  }

  /** Moderators: what a participant may do now ({publish, subscribe, publish_data}), within its
   *  token; its grants as they are then. */
  async setPermissions(identity, changes) {
    return (await this.#request({ type: "set_permissions", identity, ...changes })).grants;
  }

  /** Moderators: mute every microphone (kind "audio") or camera ("video") but the lecturers' (a
   *  tutor: its classroom's); how many tracks were muted. */
  async muteAll(kind = "audio") {
    return (await this.#request({ type: "mute_all", kind })).tracks;
  }

  /** The lecturer: lock the room (only those who have been in, and moderators, may join) or open it. */
  async lock(locked = true) {
    await this.#request({ type: "lock", locked });
  }

  /** The lecturer: let someone in from the waiting room, or turn them away. */
  async admit(identity) {
    await this.#request({ type: "admit", identity });
  }

  async deny(identity) {
    await this.#request({ type: "deny", identity });
  }

  // -- chat and questions ---------------------------------------------------------------------------

  /** Write to the room (`to` "room"), to our classroom ("classroom") or to the lecturers
   *  ("lecturer"); the message as sent. */
  async sendChat(text, { to = "room" } = {}) {
    const reply = await this.#request({ type: "chat", text, to });
    this.#addChat(reply.message);
    return reply.message;
  }

  /** Moderators: delete a chat message, by id, for everyone it reached. */
  async deleteChat(messageId) {
    await this.#request({ type: "delete_chat", message: messageId });
    this.#removeChat(messageId, null);
  }

  /** Ask the lecturers (`to` "lecturer") or our classroom's tutor ("tutor"); the question as asked.
   *  Its answer comes as a "question" event. */
  async ask(text, { to = "lecturer" } = {}) {
    const reply = await this.#request({ type: "ask", text, to });
    this.#setQuestion(reply.question);
    return reply.question;
  }

  /** Moderators: answer a question (`text` optional: answered aloud), dismiss it, or (a tutor) pass
   *  it up to the lecturers. Each returns the question as it is now. */
  async answerQuestion(questionId, text) {
    const message = { type: "answer_question", question: questionId };
    if (text) message.text = text;
    return this.#settle(message);
  }

  async dismissQuestion(questionId) {
    return this.#settle({ type: "dismiss_question", question: questionId });
  }

  async forwardQuestion(questionId) {
    return this.#settle({ type: "forward_question", question: questionId });
  }

  async #settle(message) {
    const reply = await this.#request(message);
    this.#setQuestion(reply.question);
    return reply.question;
  }

  #addChat(message) {
    if (!message || this.chat.some((m) => m.id === message.id)) return; // the reply and the event
    this.chat.push(message);
    if (this.chat.length > CHAT_KEPT) this.chat.splice(0, this.chat.length - CHAT_KEPT);
    this.emit("chat", message);
  }

  #removeChat(messageId, by) {
    const before = this.chat.length;
    this.chat = this.chat.filter((m) => m.id !== messageId);
    if (this.chat.length !== before) this.emit("chat_deleted", messageId, by);
  }

  #setQuestion(question) {
    if (!question) return;
    const known = this.questions.get(question.id);
    if (known && JSON.stringify(known) === JSON.stringify(question)) return; // the reply and the event
    this.questions.set(question.id, question);
    this.emit("question", question);
  }

  // -- adaptive stream ----------------------------------------------------------------------------------

  /** Show a remote video track in `element`: the server then sends the simulcast layer that fits the
   *  largest element showing it, and nothing while none is visible. Call unviewTrack when done. */
  viewTrack(trackId, element) {
    if (!this.views.has(trackId)) this.views.set(trackId, new Set());
    this.views.get(trackId).add(element);
    this.resizes?.observe(element);
    this.#scheduleViews();
  }

  unviewTrack(trackId, element) {
    this.views.get(trackId)?.delete(element);
    if (![...this.views.values()].some((set) => set.has(element))) this.resizes?.unobserve(element);
    this.#scheduleViews();
  }

  /** Tell the server at what size a track is shown (0 x 0: any), or that it is not shown at all. */
  async setTrackSettings(trackId, { width = 0, height = 0, enabled = true } = {}) {
    await this.signal?.request({ type: "track_settings", track: trackId, width, height, enabled });
  }

  #scheduleViews() {
    clearTimeout(this.viewTimer);
    this.viewTimer = setTimeout(() => this.#sendViews(), 250); // a resize drag sends once
  }

  #sendViews() {
    if (this.state !== "connected") return;
    const ratio = globalThis.devicePixelRatio || 1;
    for (const [trackId, elements] of this.views) {
      let width = 0;
      let height = 0;
      for (const el of elements) {
        if (!el.isConnected || el.offsetParent === null) continue; // hidden
        width = Math.max(width, Math.round(el.clientWidth * ratio));
        height = Math.max(height, Math.round(el.clientHeight * ratio));
      }
      const settings = { width, height, enabled: width > 0 && height > 0 };
      const key = JSON.stringify(settings);
      if (this.viewSent.get(trackId) === key) continue;
      this.viewSent.set(trackId, key);
      this.setTrackSettings(trackId, settings).catch(() => this.viewSent.delete(trackId));
      if (elements.size === 0) {
        this.views.delete(trackId);
        this.viewSent.delete(trackId);
      }
    }
  }

  /** The server says which of our simulcast layers anyone watches: stop encoding the others. */
  async #applyLayers(trackId, active) {
    const entry = [...this.localTracks.values()].find((e) => e.trackId === trackId);
    if (!entry || !entry.simulcast) return;
    const sender = entry.transceiver.sender;
    const parameters = sender.getParameters();
    if (!parameters.encodings?.length) return;
    let changed = false;
    for (const encoding of parameters.encodings) {
      const on = active.includes(encoding.rid);
      if (encoding.active !== on) {
        encoding.active = on;
        changed = true;
      }
    }
    if (changed) await sender.setParameters(parameters).catch((err) => console.warn("kelian: layers", err));
  }

  isMuted(source) {
    return this.localTracks.get(source)?.muted ?? false;
  }
}
