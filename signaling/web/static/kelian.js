// kelian.js: the browser client of a kelian room. A plain ES module, no build step, no dependencies.
//
//   import { Room } from "/static/kelian.js";
//   const room = new Room({ token });
//   room.on("track_subscribed", (participant, info, track) => attach(track));
//   await room.connect();
//   await room.publishCamera({ simulcast: true });
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

  /** Open a socket and join; with `resume`, ask to continue that session. Returns the joined reply. */
  async #join(resume) {
    const signal = new Signal(
      this.url,
      (message) => this.#onMessage(message),
      () => this.#lost("the connection to the server was lost"),
    );
    await signal.open();
    this.signal?.close();
    this.signal = signal;
    const message = { type: "join", token: this.token };
    if (resume) message.resume = resume;
    let joined;
    try {
      joined = await signal.request(message);
    } catch (err) {
      signal.close();
      throw err;
    }
    this.local = { ...joined.participant, grants: joined.grants };
    this.kind = joined.room.kind; // fusion, dual_teacher or live: who watches whom
    this.participantCount = joined.room.participant_count ?? joined.room.participants.length;
    this.#syncParticipants(joined.room.participants);
    return joined;
  }

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
        if (["unauthorized", "forbidden", "room_full", "room_closed"].includes(err.code)) {
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

  /** Moderators (lecturer, tutor): mute or unmute anyone's track, by its id. */
  async muteTrack(trackId, muted) {
    await this.signal.request({ type: "mute", track: trackId, muted });
  }

  /** Moderators: send a participant away (every session of that identity). */
  async removeParticipant(identity) {
    await this.signal.request({ type: "remove", identity });
  }

  /** The lecturer: bring a participant on stage (everyone watches it) or send it back. */
  async setStage(identity, on) {
    return (await this.signal.request({ type: "stage", identity, on })).stage;
  }

  /** Receive (or stop receiving) a track, by its id, or every track of a participant, by its sid:
   *  what the room's kind lets this participant watch, narrowed to what its layout shows. */
  async subscribe(target, subscribed = true) {
    const key = this.participants.has(target) ? "participant" : "track";
    await this.signal.request({ type: subscribed ? "subscribe" : "unsubscribe", [key]: target });
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
