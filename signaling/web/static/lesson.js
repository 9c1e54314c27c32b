// The lesson around the video: raised hands, invitations, the waiting room, questions, chat, the
// lock and the participant count. app.js owns the media and the tiles; this module owns the side
// panel, the invitation card and the lesson's buttons in the control bar.
//
// It reads the lesson's state from the Room (room.hands, room.chat, room.questions...) and redraws
// from it whenever the SDK says it changed; it never parses protocol messages itself.
//
// Hooks for tests: each list item has data-key (identity, message or question id), questions have
// data-status, #invitation[data-to], #raise-hand[data-state], #lock[data-state], #count[data-count].

import { setText, setTitle, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);

export const LECTURE = new Set(["lecturer", "admin"]); // act on the whole room
export const MODERATORS = new Set(["lecturer", "admin", "tutor"]);

/** Where this participant may write: the room, its classroom (when it belongs to one) and the
 *  lecturers (which the lecturers themselves need not pick). */
function chatScopes(role, classroom) {
  if (LECTURE.has(role)) return ["room"];
  if (role === "tutor") return classroom ? ["classroom", "room"] : ["room"];
  return classroom ? ["room", "classroom", "lecturer"] : ["room", "lecturer"];
}

/** Whom this participant may ask: the lecturers, and its classroom's tutor when it has a classroom. */
function askTargets(role, classroom) {
  return classroom && !MODERATORS.has(role) ? ["lecturer", "tutor"] : ["lecturer"];
}

function button(key, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  setText(b, key);
  b.addEventListener("click", onClick);
  return b;
}

function span(className, text) {
  const s = document.createElement("span");
  s.className = className;
  if (text !== undefined) s.textContent = text;
  return s;
}

/** Make `list`'s children match `items`, by key, reusing the elements it has (so that what a
 *  person is typing in one of them survives a redraw), in the order of `items`. */
function reconcile(list, items, keyOf, make, update) {
  const old = new Map([...list.children].map((el) => [el.dataset.key, el]));
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let el = old.get(key);
    if (el) old.delete(key);
    else {
      el = make(item);
      el.dataset.key = key;
    }
    update(el, item);
    const expected = previous ? previous.nextElementSibling : list.firstElementChild;
    if (el !== expected) list.insertBefore(el, expected);
    previous = el;
  }
  for (const el of old.values()) el.remove();
}

function nameOf(person) {
  return person ? person.name || person.identity || "?" : "";
}

function timeOf(ms) {
  try {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  } catch {
    return "";
  }
}

export class LessonPanel {
  /** `notify(key, vars)` shows a notice, `fail(err)` an error; `changed()` tells app.js that
   *  something it draws (the hands on tiles) may have changed. */
  constructor({ notify, fail, changed }) {
    this.notify = notify;
    this.fail = fail;
    this.changed = changed;
    this.room = null;
    this.context = null; // {page, role, classroom}
    this.invited = new Map(); // identity -> "speak"|"stage": invitations we sent, not answered yet
    this.unread = 0; // chat messages that came while the drawer was closed (fusion grid)
    this.ui = {
      panel: $("panel"),
      count: $("count"),
      countNumber: $("count-number"),
      lockedChip: $("locked-chip"),
      hand: $("raise-hand"),
      muteAll: $("mute-all"),
      lock: $("lock"),
      togglePanel: $("toggle-panel"),
      panelBadge: $("panel-badge"),
      invitation: $("invitation"),
      invitationText: $("invitation-text"),
      accept: $("invitation-accept"),
      decline: $("invitation-decline"),
      paneWaiting: $("pane-waiting"),
      waitingList: $("waiting-list"),
      waitingCount: $("waiting-count"),
      paneHands: $("pane-hands"),
      handsList: $("hands-list"),
      handsCount: $("hands-count"),
      paneQuestions: $("pane-questions"),
      questionsTitle: $("questions-title"),
      questionsList: $("questions-list"),
      questionsCount: $("questions-count"),
      askForm: $("ask-form"),
      askTo: $("ask-to"),
      askText: $("ask-text"),
      paneChat: $("pane-chat"),
      chatList: $("chat-list"),
      chatForm: $("chat-form"),
      chatTo: $("chat-to"),
      chatText: $("chat-text"),
    };
    const ui = this.ui;
    ui.hand.addEventListener("click", () => this.#toggleHand());
    ui.muteAll.addEventListener("click", () => this.#muteAll());
    ui.lock.addEventListener("click", () => this.#toggleLock());
    ui.togglePanel.addEventListener("click", () => this.setDrawer(document.body.dataset.panel !== "open"));
    ui.accept.addEventListener("click", () => this.#answerInvitation(true));
    ui.decline.addEventListener("click", () => this.#answerInvitation(false));
    ui.chatForm.addEventListener("submit", (event) => this.#sendChat(event));
    ui.askForm.addEventListener("submit", (event) => this.#ask(event));
  }

  /** Follow `room` from now on; `context` says which page shows it and who we are. */
  attach(room, context) {
    this.room = room;
    this.context = context;
    this.invited.clear();
    this.unread = 0;
    const on = (event, handler) =>
      room.on(event, (...args) => {
        if (this.room === room) handler(...args);
      });
    on("lesson", () => this.render());
    on("permissions", () => this.render());
    on("participant_count", () => this.#renderChips());
    on("room_locked", (locked, by) => {
      this.#renderChips();
      this.#renderControls();
      if (by && by.sid !== room.local?.sid) this.notify(locked ? "notice.room_locked" : "notice.room_unlocked");
    });
    on("hands", () => {
      this.#renderHands();
      this.changed();
    });
    on("hand", (hand, by) => {
      this.#renderControls();
      if (!hand.raised && by) this.notify("notice.hand_lowered");
    });
    on("invitation", () => this.#renderInvitation());
    on("invitation_answered", ({ identity, accepted }) => {
      this.invited.delete(identity);
      this.#renderHands();
      const name = this.#displayName(identity);
      this.notify(accepted ? "notice.invitation_accepted" : "notice.invitation_declined", { name });
    });
    on("waiting_list", () => this.#renderWaiting());
    on("chat", () => {
      if (document.body.dataset.page === "grid" && document.body.dataset.panel !== "open") this.unread += 1;
      this.#renderChat(true);
      this.#renderBadge();
    });
    on("chat_deleted", () => this.#renderChat(false));
    on("question", (question) => {
      this.#renderQuestions();
      const mine = question.from && question.from.identity === room.local?.identity;
      if (mine && question.status === "answered" && !MODERATORS.has(this.context.role)) {
        this.notify("notice.question_answered");
      }
    });
    on("stage", () => this.#renderHands());
    this.render();
  }

  detach() {
    this.room = null;
    this.context = null;
    this.invited.clear();
    for (const list of [this.ui.waitingList, this.ui.handsList, this.ui.questionsList, this.ui.chatList]) {
      list.replaceChildren();
    }
    this.ui.invitation.hidden = true;
    this.ui.count.hidden = true;
    this.ui.lockedChip.hidden = true;
    for (const control of [this.ui.hand, this.ui.muteAll, this.ui.lock, this.ui.togglePanel]) control.hidden = true;
    this.setDrawer(false);
  }

  /** The fusion grid keeps the panel in a drawer: open or close it. */
  setDrawer(open) {
    document.body.dataset.panel = open ? "open" : "closed";
    this.ui.togglePanel.dataset.state = open ? "on" : "off";
    this.ui.togglePanel.setAttribute("aria-pressed", String(open));
    if (open) this.unread = 0;
    this.#renderBadge();
    if (open) this.#scrollChat(true);
  }

  render() {
    if (!this.room) return;
    this.#renderChips();
    this.#renderControls();
    this.#renderInvitation();
    this.#renderPanes();
    this.#renderWaiting();
    this.#renderHands();
    this.#renderQuestions();
    this.#renderChat(false);
    this.#renderBadge();
    this.changed();
  }

  // -- who we are ----------------------------------------------------------------------------------

  get #role() {
    return this.context?.role ?? "";
  }

  get #moderator() {
    return MODERATORS.has(this.#role) && Boolean(this.room?.grants.moderate);
  }

  get #lecture() {
    return LECTURE.has(this.#role) && Boolean(this.room?.grants.moderate);
  }

  #displayName(identity) {
    for (const p of this.room?.participants.values() ?? []) if (p.identity === identity) return p.name || identity;
    const hand = this.room?.hands.find((h) => h.identity === identity);
    return hand ? hand.name : identity;
  }

  // -- the top bar and the control bar ----------------------------------------------------------------

  #renderChips() {
    const room = this.room;
    const count = room.participantCount || room.participants.size + 1;
    this.ui.count.hidden = false;
    this.ui.count.dataset.count = String(count);
    this.ui.countNumber.textContent = String(count);
    setTitle(this.ui.count, "room.count", { count });
    this.ui.lockedChip.hidden = !room.locked;
  }

  #renderControls() {
    const room = this.room;
    const page = this.context.page;
    const { hand, muteAll, lock, togglePanel } = this.ui;
    hand.hidden = MODERATORS.has(this.#role) || this.#role === "recorder";
    const raised = room.hand.raised;
    hand.dataset.state = raised ? "on" : "off";
    hand.setAttribute("aria-pressed", String(raised));
    setText(hand.querySelector(".control-text"), raised ? "controls.hand.lower" : "controls.hand.raise");
    muteAll.hidden = !this.#moderator || page === "box";
    setText(muteAll.querySelector(".control-text"), this.#role === "tutor" ? "controls.mute_classroom" : "controls.mute_all");
    lock.hidden = !this.#lecture;
    lock.dataset.state = room.locked ? "on" : "off";
    lock.setAttribute("aria-pressed", String(room.locked));
    setText(lock.querySelector(".control-text"), room.locked ? "controls.unlock" : "controls.lock");
    togglePanel.hidden = page !== "grid";
  }

  #renderBadge() {
    const badge = this.ui.panelBadge;
    badge.hidden = this.unread === 0;
    badge.textContent = this.unread > 99 ? "99+" : String(this.unread);
  }

  async #toggleHand() {
    const room = this.room;
    if (!room) return;
    this.ui.hand.disabled = true;
    try {
      if (room.hand.raised) await room.lowerHand();
      else await room.raiseHand();
    } catch (err) {
      if (this.room === room) this.fail(err);
    } finally {
      this.ui.hand.disabled = false;
    }
  }

  async #muteAll() {
    const room = this.room;
    if (!room) return;
    this.ui.muteAll.disabled = true;
    try {
      const count = await room.muteAll("audio");
      if (this.room === room) this.notify("notice.muted_all", { count });
    } catch (err) {
      if (this.room === room) this.fail(err);
    } finally {
      this.ui.muteAll.disabled = false;
    }
  }

  async #toggleLock() {
    const room = this.room;
    if (!room) return;
    this.ui.lock.disabled = true;
    try {
      await room.lock(!room.locked);
    } catch (err) {
      if (this.room === room) this.fail(err);
    } finally {
      this.ui.lock.disabled = false;
      if (this.room === room) this.#renderControls();
    }
  }

  // -- an invitation for us ---------------------------------------------------------------------------

  #renderInvitation() {
    const invitation = this.room.invitation;
    const card = this.ui.invitation;
    card.hidden = !invitation;
    if (!invitation) {
      delete card.dataset.to;
      return;
    }
    card.dataset.to = invitation.to;
    const name = invitation.by ? nameOf(invitation.by) : t("invitation.teacher");
    setText(this.ui.invitationText, invitation.to === "stage" ? "invitation.stage" : "invitation.speak", { name });
  }

  async #answerInvitation(accept) {
    const room = this.room;
    if (!room) return;
    this.ui.accept.disabled = this.ui.decline.disabled = true;
    try {
      if (accept) await room.acceptInvitation();
      else await room.declineInvitation();
    } catch (err) {
      if (this.room === room && err.code !== "unexpected") this.fail(err);
    } finally {
      this.ui.accept.disabled = this.ui.decline.disabled = false;
      if (this.room === room) this.#renderInvitation();
    }
  }

  // -- the panel -----------------------------------------------------------------------------------------

  /** Which parts of the panel this participant has: the lecture the waiting room, moderators the
   *  hands, everyone questions (a moderator's queue, or one's own with a form to ask) and chat. */
  #renderPanes() {
    const room = this.room;
    const { role, classroom } = this.context;
    const ui = this.ui;
    ui.paneWaiting.hidden = !(this.#lecture && room.waitingRoom);
    ui.paneHands.hidden = !this.#moderator;
    ui.paneQuestions.hidden = false;
    ui.paneChat.hidden = false;
    setText(ui.questionsTitle, this.#moderator ? "questions.title" : "questions.mine");
    const mayWrite = Boolean(room.grants.publish_data);
    ui.askForm.hidden = this.#moderator || !mayWrite;
    ui.chatForm.hidden = !mayWrite;
    fillSelect(ui.chatTo, chatScopes(role, classroom), "chat.to.");
    fillSelect(ui.askTo, askTargets(role, classroom), "questions.to.");
  }

  #renderWaiting() {
    const room = this.room;
    const list = room.waiting;
    this.ui.waitingCount.textContent = String(list.length);
    this.ui.paneWaiting.dataset.count = String(list.length);
    reconcile(
      this.ui.waitingList,
      list,
      (w) => w.identity,
      (w) => {
        const li = document.createElement("li");
        li.className = "item";
        const head = span("item-head");
        head.append(span("who"), span("tag"));
        const actions = span("item-actions");
        actions.append(
          button("waiting.admit", "small primary", () => this.#act(li, () => room.admit(w.identity))),
          button("waiting.deny", "small secondary", () => this.#act(li, () => room.deny(w.identity))),
        );
        li.append(head, actions);
        return li;
      },
      (li, w) => {
        li.querySelector(".who").textContent = w.name || w.identity;
        setText(li.querySelector(".tag"), `role.${w.role}`);
      },
    );
  }

  #renderHands() {
    const room = this.room;
    if (!room) return;
    const queue = room.hands;
    this.ui.handsCount.textContent = String(queue.length);
    this.ui.paneHands.dataset.count = String(queue.length);
    const stageToo = this.#lecture && room.kind !== "fusion";
    reconcile(
      this.ui.handsList,
      queue,
      (h) => h.identity,
      (h) => {
        const li = document.createElement("li");
        li.className = "item hand";
        const head = span("item-head");
        head.append(span("position"), span("who"), span("tag"));
        const status = span("item-status");
        const actions = span("item-actions");
        actions.append(button("hands.invite_speak", "small primary", () => this.#invite(li, h.identity, "speak")));
        if (stageToo) {
          const stage = button("hands.invite_stage", "small primary", () => this.#invite(li, h.identity, "stage"));
          stage.dataset.action = "stage";
          actions.append(stage);
        }
        actions.append(button("hands.lower", "small secondary", () => this.#act(li, () => room.lowerHand(h.identity))));
        li.append(head, status, actions);
        return li;
      },
      (li, h) => {
        li.querySelector(".position").textContent = String(queue.indexOf(h) + 1);
        li.querySelector(".who").textContent = h.name || h.identity;
        setText(li.querySelector(".tag"), `role.${h.role}`);
        const invited = this.invited.get(h.identity);
        li.dataset.invited = invited || "";
        const status = li.querySelector(".item-status");
        status.hidden = !invited;
        if (invited) setText(status, invited === "stage" ? "hands.invited_stage" : "hands.invited_speak");
        const staged = room.stage.includes(h.identity);
        const stage = li.querySelector('[data-action="stage"]');
        if (stage) stage.hidden = staged;
      },
    );
  }

  async #invite(li, identity, to) {
    await this.#act(li, async () => {
      await this.room.invite(identity, to);
      this.invited.set(identity, to);
    });
    this.#renderHands();
  }

  /** Run one action of a list item with its buttons disabled meanwhile; a refusal is shown. */
  async #act(li, action) {
    const room = this.room;
    const buttons = [...li.querySelectorAll("button")];
    for (const b of buttons) b.disabled = true;
    try {
      await action();
    } catch (err) {
      if (this.room === room) this.fail(err);
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }

  // -- questions -----------------------------------------------------------------------------------------

  #renderQuestions() {
    const room = this.room;
    if (!room) return;
    const all = [...room.questions.values()];
    // moderators: the open ones first, as a queue; askers: their own, in the order asked
    const shown = this.#moderator ? [...all.filter((q) => q.status === "open"), ...all.filter((q) => q.status !== "open")] : all;
    const open = all.filter((q) => q.status === "open").length;
    this.ui.questionsCount.textContent = String(this.#moderator ? open : all.length);
    this.ui.paneQuestions.dataset.count = String(all.length);
    reconcile(
      this.ui.questionsList,
      shown,
      (q) => q.id,
      (q) => this.#questionItem(q),
      (li, q) => this.#updateQuestion(li, q),
    );
  }

  #questionItem(q) {
    const room = this.room;
    const li = document.createElement("li");
    li.className = "item question";
    const head = span("item-head");
    head.append(span("who"), span("tag scope"), span("status"));
    const text = document.createElement("p");
    text.className = "question-text";
    const answer = document.createElement("p");
    answer.className = "answer";
    li.append(head, text, answer);
    if (!this.#moderator) return li;
    const actions = span("item-actions");
    const form = document.createElement("form");
    form.className = "answer-form composer";
    form.hidden = true;
    form.noValidate = true;
    const input = document.createElement("input");
    input.type = "text";
    input.maxLength = 1000;
    input.autocomplete = "off";
    input.className = "answer-text";
    input.dataset.i18nPlaceholder = "questions.answer_placeholder";
    input.placeholder = t("questions.answer_placeholder");
    input.dataset.i18nLabel = "questions.answer";
    input.setAttribute("aria-label", t("questions.answer"));
    const send = document.createElement("button");
    send.type = "submit";
    send.className = "small primary";
    setText(send, "questions.send_answer");
    form.append(input, send);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#act(li, () => room.answerQuestion(q.id, input.value.trim() || undefined)).then(() => {
        input.value = "";
      });
    });
    const answerButton = button("questions.answer", "small primary", () => {
      form.hidden = !form.hidden;
      if (!form.hidden) input.focus();
    });
    answerButton.dataset.action = "answer";
    const dismiss = button("questions.dismiss", "small secondary", () => this.#act(li, () => room.dismissQuestion(q.id)));
    dismiss.dataset.action = "dismiss";
    const forward = button("questions.forward", "small secondary", () => this.#act(li, () => room.forwardQuestion(q.id)));
    forward.dataset.action = "forward";
    actions.append(answerButton, dismiss, forward);
    li.append(actions, form);
    return li;
  }

  #updateQuestion(li, q) {
    const moderator = this.#moderator;
    li.dataset.status = q.status;
    li.dataset.to = q.to;
    const who = li.querySelector(".who");
    who.textContent = moderator ? nameOf(q.from) || t("chat.school") : timeOf(q.at);
    const scope = li.querySelector(".scope");
    // a tutor sees its classroom's questions for itself and for the lecturer; a lecturer, the
    // classroom a question comes from
    if (this.#role === "tutor") setText(scope, q.to === "tutor" ? "questions.for_tutor" : "questions.for_lecturer");
    else if (moderator && q.classroom) {
      delete scope.dataset.i18n;
      scope.textContent = this.#displayName(q.classroom);
    } else if (!moderator && q.to === "tutor") setText(scope, "questions.for_tutor");
    else {
      delete scope.dataset.i18n;
      scope.textContent = "";
    }
    scope.hidden = !scope.textContent;
    setText(li.querySelector(".status"), `questions.status.${q.status}`);
    li.querySelector(".question-text").textContent = q.text;
    const answer = li.querySelector(".answer");
    if (q.status === "answered" && q.answer) {
      delete answer.dataset.i18n;
      answer.textContent = q.by ? `${nameOf(q.by)}: ${q.answer}` : q.answer;
    } else if (q.status === "answered") setText(answer, "questions.answered_aloud");
    else {
      delete answer.dataset.i18n;
      answer.textContent = "";
    }
    answer.hidden = !answer.textContent;
    const actions = li.querySelector(".item-actions");
    if (actions) {
      const open = q.status === "open";
      actions.hidden = !open;
      li.querySelector('[data-action="forward"]').hidden = !(this.#role === "tutor" && q.to === "tutor");
      if (!open) li.querySelector(".answer-form").hidden = true;
    }
  }

  async #ask(event) {
    event.preventDefault();
    const room = this.room;
    const text = this.ui.askText.value.trim();
    if (!room || !text) return;
    const send = this.ui.askForm.querySelector("button");
    send.disabled = true;
    try {
      await room.ask(text, { to: this.ui.askTo.value || "lecturer" });
      this.ui.askText.value = "";
    } catch (err) {
      if (this.room === room) this.fail(err);
    } finally {
      send.disabled = false;
    }
  }

  // -- chat ------------------------------------------------------------------------------------------

  #renderChat(arrived) {
    const room = this.room;
    if (!room) return;
    const list = this.ui.chatList;
    const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 24;
    const mayDelete = this.#moderator;
    this.ui.paneChat.dataset.count = String(room.chat.length);
    reconcile(
      list,
      room.chat,
      (m) => m.id,
      (m) => {
        const li = document.createElement("li");
        li.className = "item chat-message";
        const head = span("item-head");
        head.append(span("who"), span("tag role"), span("tag scope"), span("time"));
        const text = document.createElement("p");
        text.className = "message-text";
        li.append(head, text);
        if (mayDelete) {
          const remove = document.createElement("button");
          remove.type = "button";
          remove.className = "delete";
          remove.textContent = "×";
          setTitle(remove, "chat.delete");
          remove.addEventListener("click", () => this.#act(li, () => room.deleteChat(m.id)));
          li.append(remove);
        }
        return li;
      },
      (li, m) => {
        const mine = Boolean(m.from && m.from.identity === room.local?.identity);
        li.classList.toggle("mine", mine);
        li.dataset.to = m.to;
        const who = li.querySelector(".who");
        if (m.from) {
          delete who.dataset.i18n;
          who.textContent = nameOf(m.from);
        } else setText(who, "chat.school");
        const role = li.querySelector(".role");
        const teacher = m.from && MODERATORS.has(m.from.role);
        role.hidden = !teacher;
        if (teacher) setText(role, `role.${m.from.role}`);
        const scope = li.querySelector(".scope");
        scope.hidden = m.to === "room";
        if (m.to !== "room") setText(scope, `chat.scope.${m.to}`);
        li.querySelector(".time").textContent = timeOf(m.at);
        li.querySelector(".message-text").textContent = m.text;
      },
    );
    if (arrived) this.#scrollChat(atEnd);
  }

  #scrollChat(force) {
    const list = this.ui.chatList;
    if (force) list.scrollTop = list.scrollHeight;
  }

  async #sendChat(event) {
    event.preventDefault();
    const room = this.room;
    const text = this.ui.chatText.value.trim();
    if (!room || !text) return;
    const send = this.ui.chatForm.querySelector("button");
    send.disabled = true;
    try {
      await room.sendChat(text, { to: this.ui.chatTo.value || "room" });
      this.ui.chatText.value = "";
      this.#scrollChat(true);
    } catch (err) {
      if (this.room === room) this.fail(err);
    } finally {
      send.disabled = false;
    }
  }
}

/** Options of a <select> (hidden when there is only one choice), keeping the current choice. */
function fillSelect(select, values, prefix) {
  const current = select.value;
  if ([...select.options].map((o) => o.value).join() !== values.join()) {
    select.replaceChildren(
      ...values.map((value) => {
        const option = document.createElement("option");
        option.value = value;
        setText(option, prefix + value);
        return option;
      }),
    );
    if (values.includes(current)) select.value = current;
  }
  select.hidden = values.length < 2;
}
