// Every text the web pages show (the classroom page, the switchover console and the library), in one
// place: one dictionary per language. A page's <html data-title-key> names its title's key ("app.title"
// if none).
//
// Static text is marked in the HTML with data-i18n (text content), data-i18n-placeholder,
// data-i18n-title (title, and aria-label where there is no text) and data-i18n-label (aria-label only). Text the page sets
// later goes through setText(), which records the key on the element so that a language switch
// re-translates it too.

export const LANGUAGES = { zh: "中文", en: "English" };

const STORAGE_KEY = "kelian.lang";

export const dictionaries = {
  en: {
    "app.title": "kelian classroom",
    "app.brand": "kelian",
    "lang.label": "Language",

    "join.heading": "Join a class",
    "join.intro": "Use the link from your teacher, or enter the classroom token below.",
    "join.room": "Classroom",
    "join.room.placeholder": "e.g. math-101",
    "join.name": "Your name",
    "join.name.placeholder": "e.g. Li Lei",
    "join.token": "Token",
    "join.token.placeholder": "Paste the token from your teacher",
    "join.submit": "Join",
    "join.quick": "Quick join (development)",
    "join.quick.hint": "Development server: quick join makes a token for the classroom and name above.",
    "join.joining": "Joining the classroom…",

    "room.waiting": "Waiting for others to join…",
    "room.you": "You",
    "room.screen": "{name} — screen",
    "room.pin": "Click to pin to the large view; click again to unpin",
    "room.pinned": "Pinned",
    "room.participants": "Participants",
    "room.mic_muted": "Microphone off",

    "room.locked": "Locked",
    "room.count": "{count} in the lesson",
    "room.on_stage": "On stage",
    "room.stage_empty": "Nobody else is on stage. Bring a classroom up from the grid.",
    "room.stage_empty_live": "Nobody else is on stage. Invite someone who raises a hand.",
    "room.waiting_teacher": "Waiting for the teacher…",
    "room.no_classrooms": "No classroom has joined yet.",
    "room.here": "This classroom",

    "role.lecturer": "Teacher",
    "role.admin": "Teacher",
    "role.tutor": "Tutor",
    "role.classroom": "Classroom",
    "role.student": "Student",
    "role.viewer": "Viewer",

    "tile.stage": "Bring on stage",
    "tile.send_back": "Send back",
    "tile.end_speaking": "End speaking",
    "tile.mute": "Mute",
    "tile.unmute": "Unmute",

    "panel.label": "Lesson: hands, questions and chat",

    "hands.title": "Raised hands",
    "hands.empty": "No hands are raised.",
    "hands.raised": "Hand raised",
    "hands.invite_speak": "Invite to speak",
    "hands.invite_stage": "Invite on stage",
    "hands.lower": "Lower",
    "hands.invited_speak": "Invited to speak…",
    "hands.invited_stage": "Invited on stage…",

    "questions.title": "Questions",
    "questions.mine": "My questions",
    "questions.empty": "No questions yet.",
    "questions.placeholder": "Ask the teacher a question",
    "questions.ask": "Ask",
    "questions.to": "Ask whom",
    "questions.to.lecturer": "Teacher",
    "questions.to.tutor": "Tutor",
    "questions.status.open": "Waiting for an answer",
    "questions.status.answered": "Answered",
    "questions.status.dismissed": "Dismissed",
    "questions.answer": "Answer",
    "questions.answer_placeholder": "Type an answer, or send empty if answered aloud",
    "questions.send_answer": "Send",
    "questions.dismiss": "Dismiss",
    "questions.forward": "Pass to the lecturer",
    "questions.answered_aloud": "Answered in class.",
    "questions.for_tutor": "to the tutor",
    "questions.for_lecturer": "to the lecturer",

    "chat.title": "Chat",
    "chat.empty": "No messages yet.",
    "chat.placeholder": "Write a message",
    "chat.send": "Send",
    "chat.to": "Send to",
    "chat.to.room": "Everyone",
    "chat.to.classroom": "My class",
    "chat.to.lecturer": "Teacher only",
    "chat.scope.classroom": "to the classroom",
    "chat.scope.lecturer": "to the teacher",
    "chat.delete": "Delete this message",
    "chat.school": "School",

    "waiting.heading": "Waiting for the teacher to let you in",
    "waiting.text": "This lesson has a waiting room. Keep this page open: it opens by itself when you are let in.",
    "waiting.position": "You are number {position} in line.",
    "waiting.leave": "Leave",
    "waiting.list": "Waiting room",
    "waiting.empty": "Nobody is waiting.",
    "waiting.admit": "Admit",
    "waiting.deny": "Deny",

    "invitation.speak": "{name} invites you to speak.",
    "invitation.stage": "{name} invites you on stage: everyone will see and hear you.",
    "invitation.teacher": "The teacher",
    "invitation.accept": "Accept",
    "invitation.decline": "Decline",

    "box.connecting": "Connecting to the lesson…",
    "box.retry": "Cannot reach the lesson. Trying again in {seconds} s…",
    "box.replaced": "This classroom was opened on another screen.",
    "box.removed": "The teacher removed this classroom from the lesson.",
    "box.rejoin": "Join again",

    "controls.label": "Classroom controls",
    "controls.mic.on": "Mute",
    "controls.mic.off": "Unmute",
    "controls.camera.on": "Stop video",
    "controls.camera.off": "Start video",
    "controls.screen.on": "Stop sharing",
    "controls.screen.off": "Share screen",
    "controls.leave": "Leave",
    "controls.enable_audio": "Click to turn on sound",
    "controls.hand.raise": "Raise hand",
    "controls.hand.lower": "Lower hand",
    "controls.mute_all": "Mute all",
    "controls.mute_classroom": "Mute classroom",
    "controls.lock": "Lock room",
    "controls.unlock": "Unlock room",
    "controls.panel": "Chat",

    "quality.excellent": "Connection: excellent",
    "quality.good": "Connection: good",
    "quality.poor": "Connection: poor",
    "quality.lost": "Connection: lost",

    "state.connecting": "Connecting…",
    "state.reconnecting": "Reconnecting… the connection was interrupted, trying again.",

    "notice.left": "You left the classroom.",
    "notice.muted_by_teacher": "The teacher turned off your microphone.",
    "notice.camera_off_by_teacher": "The teacher turned off your camera.",
    "notice.viewer": "You are watching. Raise your hand if you want to speak.",
    "notice.screen_ended": "Screen sharing stopped.",
    "notice.track_unsupported": "This browser cannot play {name}'s {codec} video.",
    "notice.may_speak": "You may speak now: your camera and microphone are on.",
    "notice.sent_back": "The teacher ended your turn: your camera and microphone are off.",
    "notice.hand_lowered": "The teacher lowered your hand.",
    "notice.invitation_accepted": "{name} accepted your invitation.",
    "notice.invitation_declined": "{name} declined your invitation.",
    "notice.muted_all": "{count} microphones muted.",
    "notice.room_locked": "The room is locked: nobody new can join.",
    "notice.room_unlocked": "The room is open again.",
    "notice.question_answered": "Your question was answered.",

    "error.close": "Dismiss",
    "error.unauthorized":
      "Your link or token is not valid or has expired — ask your teacher for a new one.",
    "error.forbidden":
      "This link or token is for a different classroom — check the link or ask your teacher for a new one.",
    "error.room_full": "This classroom is full. Try again in a few minutes, or ask your teacher.",
    "error.network":
      "Cannot reach the classroom server. Check your network connection and try again.",
    "error.lost":
      "The connection to the classroom was lost. Check your network connection, then join again.",
    "error.removed": "The teacher removed you from the classroom.",
    "error.room_closed": "The class has ended: the classroom was closed.",
    "error.replaced": "You joined this class from another window or device, so this one has left.",
    "error.device_denied":
      "The browser is not allowed to use your camera or microphone. You joined without them. " +
      "To allow them, click the camera icon (or the lock) in the address bar, choose “Allow”, " +
      "then press “Start video” or “Unmute”.",
    "error.device_missing":
      "No camera or microphone was found. You joined without them. Connect one, then press " +
      "“Start video” or “Unmute”.",
    "error.device_busy":
      "Your camera or microphone is being used by another program. Close that program, then press " +
      "“Start video” or “Unmute”.",
    "error.screen_failed": "Screen sharing could not start.",
    "error.need_token": "Enter the token from your teacher, or open the link they sent you.",
    "error.need_room_name": "Enter the classroom and your name first.",
    "error.dev_token": "The development server did not give a token ({message}).",
    "error.denied": "The teacher did not let you in.",
    "error.room_locked": "The teacher has locked this lesson: nobody new can join now.",
    "error.stage_full": "The stage is full: send someone back first.",
    "error.rate_limited": "Too many messages at once: wait a moment and send again.",
    "error.too_large": "That message is too long.",
    "error.generic": "Something went wrong: {message}",

    // the switchover console (/console)
    "console.title": "kelian switchover console",
    "console.label": "Switchover console",
    "console.login.heading": "Switchover console",
    "console.login.intro":
      "For school and district administrators: switch lessons between in person and online at once. " +
      "Sign in with the server's API key and secret: they stay in this browser tab only, and are " +
      "forgotten when it closes.",
    "console.login.key": "API key",
    "console.login.secret": "API secret",
    "console.login.by": "Your name",
    "console.login.by.placeholder": "e.g. Head of school",
    "console.login.by.hint": "The audit log records who made each switch.",
    "console.login.submit": "Sign in",
    "console.login.checking": "Checking…",
    "console.signed_in": "Signed in as {name}",
    "console.signout": "Sign out",
    "console.org": "Districts and schools",
    "console.refresh": "Refresh",
    "console.updated": "Updated {time}",
    "console.loading": "Loading the organisation…",
    "console.filter": "Find a school",
    "console.filter.none": "No school matches “{text}”.",
    "console.no_districts":
      "No district yet. The school's timetable system imports the organisation through the admin API " +
      "(POST /api/v1/import).",
    "console.no_schools": "No school in this district.",
    "console.district": "District",
    "console.school": "School",
    "console.mode.online": "Online",
    "console.mode.offline": "In person",
    "console.mode.online.title": "Online: lessons in their online rooms, students join from home",
    "console.mode.offline.title": "In person (offline): lessons in their classrooms",
    "console.count.schools_online": "Online: {online} of {count} schools",
    "console.count.in_session": "Lessons in session: {count}",
    "console.count.connected": "Connected: {count}",
    "console.classrooms": "Classrooms",
    "console.no_classrooms": "No classroom.",
    "console.in_session": "In session now",
    "console.no_lessons": "No lesson in session now.",
    "console.lesson.time": "{start}–{end}",
    "console.lesson.own": "set for this lesson",
    "console.lesson.follows": "as its school",
    "console.kind.fusion": "Fusion",
    "console.kind.dual_teacher": "Dual teacher",
    "console.kind.live": "Live",
    "console.switch.online": "Switch online",
    "console.switch.offline": "Switch to in person",
    "console.scope.district": "district “{name}”",
    "console.scope.school": "school “{name}”",
    "console.scope.lesson": "lesson “{name}”",
    "console.audit.scope.district": "District: {name}",
    "console.audit.scope.school": "School: {name}",
    "console.audit.scope.lesson": "Lesson: {name}",
    "console.audit.scope.lessons": "Lessons: {name}",
    "console.confirm.online": "Switch {scope} online?",
    "console.confirm.offline": "Switch {scope} to in person?",
    "console.confirm.in_session": "Lessons in session now: {count}",
    "console.confirm.connected": "People connected now: {count}",
    "console.confirm.what.online":
      "The online rooms of these lessons open, everyone connected is told at once and students may " +
      "join from home. Nobody is disconnected and no video stops.",
    "console.confirm.what.offline":
      "Everyone connected is told at once. Students at home stay until every classroom of their " +
      "lesson is back, then are sent back to class.",
    "console.confirm.district": "Every school of the district takes this mode, also schools switched on their own.",
    "console.confirm.school": "Lessons switched on their own follow the school again.",
    "console.confirm.by": "Your name (recorded in the audit log)",
    "console.confirm.cancel": "Cancel",
    "console.result.busy": "Switching {scope}…",
    "console.result.online": "Online now: {scope}",
    "console.result.offline": "In person now: {scope}",
    "console.result.failed": "Not switched: {scope}. The message above says why.",
    "console.result.told": "Clients told",
    "console.result.lessons": "Lessons in session",
    "console.result.rooms": "Rooms opened",
    "console.result.time": "Time taken",
    "console.result.ms": "{ms} ms",
    "console.result.time.title": "From the request to the last client's message being sent",
    "console.result.close": "Hide",
    "console.audit": "Audit log",
    "console.audit.empty": "No switchover yet.",
    "console.audit.number": "No.",
    "console.audit.at": "Time",
    "console.audit.by": "By",
    "console.audit.scope": "Scope",
    "console.audit.mode": "Mode",
    "console.audit.schools": "Schools",
    "console.audit.lessons": "Lessons in session",
    "console.audit.rooms": "Rooms opened",
    "console.audit.told": "Clients told",
    "console.audit.ms": "Time taken",
    "console.error.need_credentials": "Enter the API key and the API secret of the kelian server.",
    "console.error.need_by": "Enter your name: the audit log records who made each switch.",
    "console.error.unauthorized":
      "The API key or secret is wrong. Use the values the kelian server was started with " +
      "(KELIAN_API_KEY and KELIAN_API_SECRET), then sign in again.",
    "console.error.network":
      "Cannot reach the kelian server. Check the network connection, then try again.",
    "console.error.not_found": "{message}: it may have just been deleted, so the tree was reloaded.",
    "console.error.server": "The server refused: {message}",
    "console.error.unavailable":
      "The kelian server could not answer ({status} {message}). Try again in a moment; if it goes on, " +
      "whoever runs the server should look at its log.",

    "library.title": "kelian air-classroom library",
    "library.label": "Air-classroom library",
    "library.signout": "Sign out",
    "library.leave": "Leave",
    "library.layout.tv": "TV layout",
    "library.layout.normal": "Normal layout",
    "library.who.reviewer": "Reviewer: {name}",
    "library.who.teacher": "Teacher: drafts shown too",
    "library.who.student": "Published lessons",
    "library.start.watch": "Watch lessons",
    "library.start.watch.intro":
      "Open the library link from your school, or paste the token it carries. TVs: add &layout=tv to the link.",
    "library.start.token": "Token",
    "library.start.token.placeholder": "Paste the token from your school",
    "library.start.open": "Open the library",
    "library.login.heading": "Review the library",
    "library.login.intro":
      "Reviewers sign in with the kelian server's API key and secret. They are kept in this browser tab only.",
    "library.login.reviewer": "Your name",
    "library.login.reviewer.placeholder": "e.g. Ms Li, maths group",
    "library.login.reviewer.hint": "Every item you publish or reject records who reviewed it.",
    "library.search": "Search",
    "library.search.placeholder": "Search titles and tags",
    "library.loading": "Loading…",
    "library.count": "{count} lessons",
    "library.empty": "Nothing in the library yet.",
    "library.empty.filtered": "No lesson matches. Try other words or fewer filters.",
    "library.more": "Show more",
    "library.filter.all_stages": "All stages",
    "library.filter.all_grades": "All grades",
    "library.filter.all_subjects": "All subjects",
    "library.field.title": "Title",
    "library.field.stage": "Stage",
    "library.field.grade": "Grade",
    "library.field.subject": "Subject",
    "library.field.teacher": "Teacher",
    "library.field.school": "School",
    "library.field.date": "Date",
    "library.field.tags": "Tags",
    "library.field.tags.placeholder": "Separated by commas",
    "library.field.none": "—",
    "library.stage.primary": "Primary",
    "library.stage.junior": "Junior secondary",
    "library.stage.senior": "Senior secondary",
    "library.grade.1": "Grade 1",
    "library.grade.2": "Grade 2",
    "library.grade.3": "Grade 3",
    "library.grade.4": "Grade 4",
    "library.grade.5": "Grade 5",
    "library.grade.6": "Grade 6",
    "library.grade.7": "Grade 7",
    "library.grade.8": "Grade 8",
    "library.grade.9": "Grade 9",
    "library.grade.10": "Grade 10",
    "library.grade.11": "Grade 11",
    "library.grade.12": "Grade 12",
    "library.subject.chinese": "Chinese",
    "library.subject.maths": "Maths",
    "library.subject.english": "English",
    "library.subject.physics": "Physics",
    "library.subject.chemistry": "Chemistry",
    "library.subject.biology": "Biology",
    "library.subject.history": "History",
    "library.subject.geography": "Geography",
    "library.subject.politics": "Morality and law",
    "library.subject.science": "Science",
    "library.subject.music": "Music",
    "library.subject.art": "Art",
    "library.subject.pe": "PE",
    "library.subject.it": "IT",
    "library.kind.lesson": "Lesson",
    "library.kind.micro": "Micro-lesson",
    "library.status.finishing": "Finishing",
    "library.status.draft": "Draft",
    "library.status.in_review": "In review",
    "library.status.published": "Published",
    "library.status.rejected": "Rejected",
    "library.status.failed": "Failed",
    "library.back": "Back",
    "library.player.source": "Format",
    "library.player.fallback": "HLS did not play in this browser: playing the MP4 instead.",
    "library.player.tv_link": "Link for TVs and set-top boxes",
    "library.player.tv_link.hint": "HLS: open it in the TV's or set-top box's player. It holds your token: share it with nobody.",
    "library.player.copy": "Copy",
    "library.player.copied": "Link copied.",
    "library.review.tabs": "Items by status",
    "library.review.empty": "Nothing is {status} now.",
    "library.progress": "Finishing: {percent}",
    "library.reason": "Why: {reason}",
    "library.facts.from": "from “{title}” at {at}",
    "library.facts.recording": "recording {recording}",
    "library.facts.reviewer": "reviewed by {name}",
    "library.facts.created": "filed {time}",
    "library.editor.close": "Close",
    "library.editor.catalogue": "Catalogue",
    "library.editor.save": "Save",
    "library.editor.saved": "Saved.",
    "library.step.submit": "Submit for review",
    "library.step.publish": "Publish",
    "library.step.reject": "Reject",
    "library.step.withdraw": "Withdraw",
    "library.confirm.submit": "Submit “{title}” for review?",
    "library.confirm.publish": "Publish “{title}”?",
    "library.confirm.reject": "Reject “{title}”?",
    "library.confirm.withdraw": "Withdraw “{title}”?",
    "library.confirm.what.submit": "A reviewer checks it before any student can see it.",
    "library.confirm.what.publish": "Students and viewers will find it in the library and can play it at once.",
    "library.confirm.what.reject":
      "It goes back to its teacher with your reason; it can be submitted again once mended.",
    "library.confirm.what.withdraw": "It goes back to draft: students no longer see it.",
    "library.confirm.reviewer": "Reviewer",
    "library.confirm.reason": "Why (the teacher reads this)",
    "library.confirm.reason.placeholder": "e.g. The sound drops at 2:10",
    "library.done.submit": "Submitted for review: “{title}”",
    "library.done.publish": "Published: “{title}”",
    "library.done.reject": "Rejected: “{title}”",
    "library.done.withdraw": "Withdrawn to draft: “{title}”",
    "library.done.filed": "Filed: “{title}”. It is being finished.",
    "library.done.micro": "Micro-lesson cut: “{title}” (a draft)",
    "library.micro.heading": "Cut a micro-lesson",
    "library.micro.hint":
      "Play to the start and press “Start here”, then to the end and “End here”, or type the seconds. At most {max}.",
    "library.micro.start": "Start (s)",
    "library.micro.end": "End (s)",
    "library.micro.mark_start": "Start here",
    "library.micro.mark_end": "End here",
    "library.micro.mode": "Cut",
    "library.micro.keyframe": "At keyframes (fast; may start up to 2 s earlier)",
    "library.micro.exact": "Exact to the frame (re-encoded, slower)",
    "library.micro.length": "Length {length} of at most {max}",
    "library.micro.length.none": "Choose a start and an end (at most {max}).",
    "library.micro.cut": "Cut",
    "library.micro.cutting": "Cutting…",
    "library.micro.default_title": "{title} ({start}–{end})",
    "library.micro.error.numbers": "Give the start and the end in seconds.",
    "library.micro.error.order": "The end must come after the start.",
    "library.micro.error.long": "A micro-lesson is at most {max}.",
    "library.micro.error.beyond": "The lesson is only {length} long.",
    "library.file.open": "File a recording",
    "library.file.heading": "File a recording",
    "library.file.hint":
      "A recording is a room's folder and its start time, <room>/<start time>, as the admin API names it. " +
      "The finishing job makes the MP4, HLS and poster; the item is a draft when it is done.",
    "library.file.room": "Room",
    "library.file.find": "Its recording",
    "library.file.recording": "Recording",
    "library.file.found": "Recording {recording}.",
    "library.file.found.recording": "Recording {recording} is still under way: file it once it has stopped.",
    "library.file.none": "Room “{room}” is not being recorded now: type the recording's folder.",
    "library.file.error.recording": "Type the recording as <room>/<start time>, e.g. lesson/20260901T080000.",
    "library.file.go": "File it",
    "library.error.need_token": "Paste the token from your school, or open the library link it sent.",
    "library.error.token":
      "This library link is not valid or has expired. Ask your school for a new one.",
    "library.error.need_reviewer": "Enter your name: each publication and rejection records its reviewer.",
    "library.error.need_reason": "Say why it is rejected: the teacher needs to know what to mend.",
    "library.error.need_title": "Every item needs a title.",
    "library.error.network": "Cannot reach the kelian server. Check the network connection, then try again.",
    "library.error.server": "The server refused: {message}",
    "library.error.media": "This lesson cannot be played here. Try again later, or ask your school.",
  },

  zh: {
    "app.title": "课联课堂",
    "app.brand": "课联",
    "lang.label": "语言",

    "join.heading": "进入课堂",
    "join.intro": "请使用老师发给你的链接，或在下面输入课堂令牌。",
    "join.room": "课堂",
    "join.room.placeholder": "例如 math-101",
    "join.name": "你的名字",
    "join.name.placeholder": "例如 李雷",
    "join.token": "令牌",
    "join.token.placeholder": "粘贴老师给你的令牌",
    "join.submit": "加入",
    "join.quick": "快速加入（开发模式）",
    "join.quick.hint": "开发服务器：快速加入会为上面的课堂和名字生成令牌。",
    "join.joining": "正在进入课堂…",

    "room.waiting": "正在等待其他人加入…",
    "room.you": "我",
    "room.screen": "{name} — 屏幕共享",
    "room.pin": "点击固定到大画面，再次点击取消固定",
    "room.pinned": "已固定",
    "room.participants": "参与者",
    "room.mic_muted": "麦克风已关闭",

    "room.locked": "已锁定",
    "room.count": "课堂共 {count} 人",
    "room.on_stage": "台上",
    "room.stage_empty": "台上还没有其他人。可以从课堂网格中请一个课堂上台。",
    "room.stage_empty_live": "台上还没有其他人。可以邀请举手的同学上台。",
    "room.waiting_teacher": "正在等待老师…",
    "room.no_classrooms": "还没有课堂加入。",
    "room.here": "本课堂",

    "role.lecturer": "主讲",
    "role.admin": "主讲",
    "role.tutor": "辅导",
    "role.classroom": "课堂",
    "role.student": "学生",
    "role.viewer": "观众",

    "tile.stage": "请上台",
    "tile.send_back": "请下台",
    "tile.end_speaking": "结束发言",
    "tile.mute": "静音",
    "tile.unmute": "取消静音",

    "panel.label": "课堂互动：举手、提问和聊天",

    "hands.title": "举手",
    "hands.empty": "还没有人举手。",
    "hands.raised": "已举手",
    "hands.invite_speak": "邀请发言",
    "hands.invite_stage": "邀请上台",
    "hands.lower": "放下",
    "hands.invited_speak": "已邀请发言…",
    "hands.invited_stage": "已邀请上台…",

    "questions.title": "提问",
    "questions.mine": "我的提问",
    "questions.empty": "还没有提问。",
    "questions.placeholder": "向老师提问",
    "questions.ask": "提问",
    "questions.to": "提问对象",
    "questions.to.lecturer": "主讲老师",
    "questions.to.tutor": "辅导老师",
    "questions.status.open": "等待回答",
    "questions.status.answered": "已回答",
    "questions.status.dismissed": "已忽略",
    "questions.answer": "回答",
    "questions.answer_placeholder": "输入回答；已口头回答可直接发送",
    "questions.send_answer": "发送",
    "questions.dismiss": "忽略",
    "questions.forward": "转给主讲老师",
    "questions.answered_aloud": "已在课上回答。",
    "questions.for_tutor": "问辅导老师",
    "questions.for_lecturer": "问主讲老师",

    "chat.title": "聊天",
    "chat.empty": "还没有消息。",
    "chat.placeholder": "输入消息",
    "chat.send": "发送",
    "chat.to": "发送给",
    "chat.to.room": "所有人",
    "chat.to.classroom": "本班",
    "chat.to.lecturer": "仅老师",
    "chat.scope.classroom": "发给本班",
    "chat.scope.lecturer": "发给老师",
    "chat.delete": "删除这条消息",
    "chat.school": "学校",

    "waiting.heading": "正在等待老师允许你进入",
    "waiting.text": "本课堂设有等候室。请保持此页面打开，老师允许后会自动进入。",
    "waiting.position": "你排在第 {position} 位。",
    "waiting.leave": "离开",
    "waiting.list": "等候室",
    "waiting.empty": "没有人在等候。",
    "waiting.admit": "允许进入",
    "waiting.deny": "拒绝",

    "invitation.speak": "{name}邀请你发言。",
    "invitation.stage": "{name}邀请你上台：所有人都会看到和听到你。",
    "invitation.teacher": "老师",
    "invitation.accept": "接受",
    "invitation.decline": "拒绝",

    "box.connecting": "正在连接课堂…",
    "box.retry": "无法连接课堂，{seconds} 秒后重试…",
    "box.replaced": "本课堂已在另一块屏幕上打开。",
    "box.removed": "老师已将本课堂移出课程。",
    "box.rejoin": "重新加入",

    "controls.label": "课堂控制",
    "controls.mic.on": "静音",
    "controls.mic.off": "取消静音",
    "controls.camera.on": "关闭视频",
    "controls.camera.off": "开启视频",
    "controls.screen.on": "停止共享",
    "controls.screen.off": "共享屏幕",
    "controls.leave": "离开",
    "controls.enable_audio": "点击开启声音",
    "controls.hand.raise": "举手",
    "controls.hand.lower": "放下手",
    "controls.mute_all": "全体静音",
    "controls.mute_classroom": "本班静音",
    "controls.lock": "锁定课堂",
    "controls.unlock": "解锁课堂",
    "controls.panel": "聊天",

    "quality.excellent": "网络：很好",
    "quality.good": "网络：良好",
    "quality.poor": "网络：较差",
    "quality.lost": "网络：已断开",

    "state.connecting": "正在连接…",
    "state.reconnecting": "正在重新连接…连接中断了，正在重试。",

    "notice.left": "你已离开课堂。",
    "notice.muted_by_teacher": "老师关闭了你的麦克风。",
    "notice.camera_off_by_teacher": "老师关闭了你的摄像头。",
    "notice.viewer": "你正在观看。想发言时请举手。",
    "notice.screen_ended": "屏幕共享已停止。",
    "notice.track_unsupported": "此浏览器无法播放{name}的 {codec} 视频。",
    "notice.may_speak": "你现在可以发言了：摄像头和麦克风已开启。",
    "notice.sent_back": "老师结束了你的发言：摄像头和麦克风已关闭。",
    "notice.hand_lowered": "老师放下了你的手。",
    "notice.invitation_accepted": "{name}接受了邀请。",
    "notice.invitation_declined": "{name}拒绝了邀请。",
    "notice.muted_all": "已将 {count} 个麦克风静音。",
    "notice.room_locked": "课堂已锁定：新的人无法加入。",
    "notice.room_unlocked": "课堂已解锁。",
    "notice.question_answered": "你的问题已得到回答。",

    "error.close": "关闭",
    "error.unauthorized": "你的链接或令牌无效或已过期，请向老师要一个新的。",
    "error.forbidden": "此链接或令牌属于另一个课堂，请检查链接或向老师要一个新的。",
    "error.room_full": "课堂人数已满。请过几分钟再试，或联系老师。",
    "error.network": "无法连接课堂服务器。请检查网络连接后重试。",
    "error.lost": "与课堂的连接已断开。请检查网络连接，然后重新加入。",
    "error.removed": "老师已将你移出课堂。",
    "error.room_closed": "课程已结束：课堂已关闭。",
    "error.replaced": "你已在另一个窗口或设备上进入本课堂，这里已退出。",
    "error.device_denied":
      "浏览器不允许使用你的摄像头或麦克风，你已在没有它们的情况下加入课堂。" +
      "如需允许，请点击地址栏中的摄像头图标（或锁形图标），选择“允许”，然后点击“开启视频”或“取消静音”。",
    "error.device_missing":
      "没有找到摄像头或麦克风，你已在没有它们的情况下加入课堂。请连接设备，然后点击“开启视频”或“取消静音”。",
    "error.device_busy": "摄像头或麦克风正被其他程序使用。请关闭该程序，然后点击“开启视频”或“取消静音”。",
    "error.screen_failed": "无法开始屏幕共享。",
    "error.need_token": "请输入老师给你的令牌，或打开老师发给你的链接。",
    "error.need_room_name": "请先输入课堂和你的名字。",
    "error.dev_token": "开发服务器没有返回令牌（{message}）。",
    "error.denied": "老师没有允许你进入课堂。",
    "error.room_locked": "老师已锁定本课堂，现在无法加入。",
    "error.stage_full": "台上已满：请先请一位下台。",
    "error.rate_limited": "发送太频繁，请稍候再发。",
    "error.too_large": "消息太长了。",
    "error.generic": "出现问题：{message}",

    // 切换控制台 (/console)
    "console.title": "课联 线上线下切换台",
    "console.label": "线上线下切换台",
    "console.login.heading": "线上线下切换台",
    "console.login.intro":
      "供学校和学区管理员使用：一次将课程在线下（到校上课）和线上之间切换。" +
      "请用服务器的 API 密钥和密码登录：它们只保存在当前浏览器标签页中，关闭后即清除。",
    "console.login.key": "API 密钥",
    "console.login.secret": "API 密码",
    "console.login.by": "你的姓名",
    "console.login.by.placeholder": "例如 王校长",
    "console.login.by.hint": "审计记录会记下每次切换的操作人。",
    "console.login.submit": "登录",
    "console.login.checking": "正在验证…",
    "console.signed_in": "当前用户：{name}",
    "console.signout": "退出",
    "console.org": "学区和学校",
    "console.refresh": "刷新",
    "console.updated": "更新于 {time}",
    "console.loading": "正在加载组织结构…",
    "console.filter": "查找学校",
    "console.filter.none": "没有与“{text}”匹配的学校。",
    "console.no_districts": "还没有学区。学校的排课系统可通过管理接口导入组织结构（POST /api/v1/import）。",
    "console.no_schools": "本学区还没有学校。",
    "console.district": "学区",
    "console.school": "学校",
    "console.mode.online": "线上",
    "console.mode.offline": "线下",
    "console.mode.online.title": "线上：课程在线上课堂进行，学生在家加入",
    "console.mode.offline.title": "线下：在教室上课",
    "console.count.schools_online": "线上：{online}/{count} 所学校",
    "console.count.in_session": "正在上的课：{count}",
    "console.count.connected": "在线连接：{count}",
    "console.classrooms": "教室",
    "console.no_classrooms": "没有教室。",
    "console.in_session": "正在上的课",
    "console.no_lessons": "现在没有正在上的课。",
    "console.lesson.time": "{start}–{end}",
    "console.lesson.own": "单独设置",
    "console.lesson.follows": "跟随学校",
    "console.kind.fusion": "融合课堂",
    "console.kind.dual_teacher": "双师课堂",
    "console.kind.live": "直播课",
    "console.switch.online": "切换到线上",
    "console.switch.offline": "切换到线下",
    "console.scope.district": "学区“{name}”",
    "console.scope.school": "学校“{name}”",
    "console.scope.lesson": "课程“{name}”",
    "console.audit.scope.district": "学区：{name}",
    "console.audit.scope.school": "学校：{name}",
    "console.audit.scope.lesson": "课程：{name}",
    "console.audit.scope.lessons": "课程：{name}",
    "console.confirm.online": "将{scope}切换到线上？",
    "console.confirm.offline": "将{scope}切换到线下？",
    "console.confirm.in_session": "正在上的课：{count}",
    "console.confirm.connected": "当前在线连接：{count}",
    "console.confirm.what.online":
      "这些课程的线上课堂会打开，所有在线的终端会立即收到通知，学生可以在家加入。不会断开任何人，视频不会中断。",
    "console.confirm.what.offline":
      "所有在线的终端会立即收到通知。在家的学生会等到本课的所有教室都回来后，再被请回教室上课。",
    "console.confirm.district": "学区内所有学校都会切换到此模式，包括单独切换过的学校。",
    "console.confirm.school": "单独切换过的课程会重新跟随学校。",
    "console.confirm.by": "你的姓名（记入审计记录）",
    "console.confirm.cancel": "取消",
    "console.result.busy": "正在切换{scope}…",
    "console.result.online": "{scope}已切换到线上。",
    "console.result.offline": "{scope}已切换到线下。",
    "console.result.failed": "{scope}未能切换，原因见上方提示。",
    "console.result.told": "已通知终端",
    "console.result.lessons": "正在上的课",
    "console.result.rooms": "打开的课堂",
    "console.result.time": "用时",
    "console.result.ms": "{ms} 毫秒",
    "console.result.time.title": "从收到请求到最后一个终端的消息发出",
    "console.result.close": "隐藏",
    "console.audit": "审计记录",
    "console.audit.empty": "还没有切换记录。",
    "console.audit.number": "编号",
    "console.audit.at": "时间",
    "console.audit.by": "操作人",
    "console.audit.scope": "范围",
    "console.audit.mode": "模式",
    "console.audit.schools": "学校",
    "console.audit.lessons": "正在上的课",
    "console.audit.rooms": "打开的课堂",
    "console.audit.told": "已通知终端",
    "console.audit.ms": "用时",
    "console.error.need_credentials": "请输入课联服务器的 API 密钥和 API 密码。",
    "console.error.need_by": "请输入你的姓名：审计记录会记下每次切换的操作人。",
    "console.error.unauthorized":
      "API 密钥或密码不正确。请使用课联服务器启动时设置的值（KELIAN_API_KEY 和 KELIAN_API_SECRET），然后重新登录。",
    "console.error.network": "无法连接课联服务器。请检查网络连接后重试。",
    "console.error.not_found": "{message}：它可能刚被删除，组织结构已重新加载。",
    "console.error.server": "服务器拒绝了请求：{message}",
    "console.error.unavailable": "课联服务器暂时无法响应（{status} {message}）。请稍后重试；如果问题持续，请让服务器管理员查看日志。",

    "library.title": "课联空中课堂资源库",
    "library.label": "空中课堂资源库",
    "library.signout": "退出登录",
    "library.leave": "离开",
    "library.layout.tv": "电视布局",
    "library.layout.normal": "普通布局",
    "library.who.reviewer": "审核人：{name}",
    "library.who.teacher": "教师：也显示草稿",
    "library.who.student": "已发布的课",
    "library.start.watch": "观看课程",
    "library.start.watch.intro": "打开学校发来的资源库链接，或粘贴链接里的令牌。电视：在链接后加上 &layout=tv。",
    "library.start.token": "令牌",
    "library.start.token.placeholder": "粘贴学校给你的令牌",
    "library.start.open": "打开资源库",
    "library.login.heading": "审核资源库",
    "library.login.intro": "审核人使用课联服务器的 API 密钥和 API 密码登录，它们只保存在当前浏览器标签页中。",
    "library.login.reviewer": "你的姓名",
    "library.login.reviewer.placeholder": "例如：数学组 李老师",
    "library.login.reviewer.hint": "每次发布或驳回都会记下审核人。",
    "library.search": "搜索",
    "library.search.placeholder": "搜索标题和标签",
    "library.loading": "正在加载…",
    "library.count": "共 {count} 节课",
    "library.empty": "资源库里还没有课。",
    "library.empty.filtered": "没有符合条件的课。换个关键词，或减少筛选条件。",
    "library.more": "显示更多",
    "library.filter.all_stages": "全部学段",
    "library.filter.all_grades": "全部年级",
    "library.filter.all_subjects": "全部学科",
    "library.field.title": "标题",
    "library.field.stage": "学段",
    "library.field.grade": "年级",
    "library.field.subject": "学科",
    "library.field.teacher": "教师",
    "library.field.school": "学校",
    "library.field.date": "日期",
    "library.field.tags": "标签",
    "library.field.tags.placeholder": "用逗号分隔",
    "library.field.none": "—",
    "library.stage.primary": "小学",
    "library.stage.junior": "初中",
    "library.stage.senior": "高中",
    "library.grade.1": "一年级",
    "library.grade.2": "二年级",
    "library.grade.3": "三年级",
    "library.grade.4": "四年级",
    "library.grade.5": "五年级",
    "library.grade.6": "六年级",
    "library.grade.7": "初一",
    "library.grade.8": "初二",
    "library.grade.9": "初三",
    "library.grade.10": "高一",
    "library.grade.11": "高二",
    "library.grade.12": "高三",
    "library.subject.chinese": "语文",
    "library.subject.maths": "数学",
    "library.subject.english": "英语",
    "library.subject.physics": "物理",
    "library.subject.chemistry": "化学",
    "library.subject.biology": "生物",
    "library.subject.history": "历史",
    "library.subject.geography": "地理",
    "library.subject.politics": "道德与法治",
    "library.subject.science": "科学",
    "library.subject.music": "音乐",
    "library.subject.art": "美术",
    "library.subject.pe": "体育",
    "library.subject.it": "信息技术",
    "library.kind.lesson": "整节课",
    "library.kind.micro": "微课",
    "library.status.finishing": "生成中",
    "library.status.draft": "草稿",
    "library.status.in_review": "审核中",
    "library.status.published": "已发布",
    "library.status.rejected": "已驳回",
    "library.status.failed": "生成失败",
    "library.back": "返回",
    "library.player.source": "格式",
    "library.player.fallback": "此浏览器无法播放 HLS，已改为播放 MP4。",
    "library.player.tv_link": "电视和机顶盒的播放链接",
    "library.player.tv_link.hint": "HLS 格式：在电视或机顶盒的播放器中打开。链接里有你的令牌，请勿分享。",
    "library.player.copy": "复制",
    "library.player.copied": "链接已复制。",
    "library.review.tabs": "按状态查看",
    "library.review.empty": "目前没有“{status}”的内容。",
    "library.progress": "生成进度：{percent}",
    "library.reason": "原因：{reason}",
    "library.facts.from": "选自《{title}》{at} 处",
    "library.facts.recording": "录制 {recording}",
    "library.facts.reviewer": "审核人 {name}",
    "library.facts.created": "入库于 {time}",
    "library.editor.close": "关闭",
    "library.editor.catalogue": "编目信息",
    "library.editor.save": "保存",
    "library.editor.saved": "已保存。",
    "library.step.submit": "提交审核",
    "library.step.publish": "发布",
    "library.step.reject": "驳回",
    "library.step.withdraw": "撤回",
    "library.confirm.submit": "将《{title}》提交审核？",
    "library.confirm.publish": "发布《{title}》？",
    "library.confirm.reject": "驳回《{title}》？",
    "library.confirm.withdraw": "撤回《{title}》？",
    "library.confirm.what.submit": "审核通过之前，学生看不到它。",
    "library.confirm.what.publish": "学生和观众会立即在资源库中看到并可以播放。",
    "library.confirm.what.reject": "它会连同你写的原因退回给任课教师；修改后可以再次提交。",
    "library.confirm.what.withdraw": "它会退回为草稿，学生将看不到它。",
    "library.confirm.reviewer": "审核人",
    "library.confirm.reason": "驳回原因（教师会看到）",
    "library.confirm.reason.placeholder": "例如：2:10 处声音中断",
    "library.done.submit": "已提交审核：《{title}》",
    "library.done.publish": "已发布：《{title}》",
    "library.done.reject": "已驳回：《{title}》",
    "library.done.withdraw": "已撤回为草稿：《{title}》",
    "library.done.filed": "已入库：《{title}》，正在生成。",
    "library.done.micro": "微课已剪辑：《{title}》（草稿）",
    "library.micro.heading": "剪辑微课",
    "library.micro.hint": "播放到开始处点“从这里开始”，再播放到结束处点“到这里结束”，也可以直接输入秒数。最长 {max}。",
    "library.micro.start": "开始（秒）",
    "library.micro.end": "结束（秒）",
    "library.micro.mark_start": "从这里开始",
    "library.micro.mark_end": "到这里结束",
    "library.micro.mode": "剪辑方式",
    "library.micro.keyframe": "按关键帧（快，可能提前至多 2 秒开始）",
    "library.micro.exact": "精确到帧（重新编码，较慢）",
    "library.micro.length": "时长 {length}，最长 {max}",
    "library.micro.length.none": "请选择开始和结束（最长 {max}）。",
    "library.micro.cut": "剪辑",
    "library.micro.cutting": "正在剪辑…",
    "library.micro.default_title": "{title}（{start}–{end}）",
    "library.micro.error.numbers": "请以秒为单位填写开始和结束。",
    "library.micro.error.order": "结束必须在开始之后。",
    "library.micro.error.long": "微课最长 {max}。",
    "library.micro.error.beyond": "这节课只有 {length}。",
    "library.file.open": "录像入库",
    "library.file.heading": "录像入库",
    "library.file.hint": "录像以“课堂/开始时间”表示（<room>/<start time>），与管理 API 的命名一致。入库后会生成 MP4、HLS 和封面，完成后成为草稿。",
    "library.file.room": "课堂",
    "library.file.find": "查找录像",
    "library.file.recording": "录像",
    "library.file.found": "录像 {recording}。",
    "library.file.found.recording": "录像 {recording} 仍在录制中：停止录制后再入库。",
    "library.file.none": "课堂“{room}”现在没有在录制：请直接填写录像目录。",
    "library.file.error.recording": "请按“课堂/开始时间”填写录像，例如 lesson/20260901T080000。",
    "library.file.go": "入库",
    "library.error.need_token": "请粘贴学校给你的令牌，或打开学校发来的资源库链接。",
    "library.error.token": "这个资源库链接无效或已过期。请向学校索取新的链接。",
    "library.error.need_reviewer": "请输入你的姓名：每次发布和驳回都会记下审核人。",
    "library.error.need_reason": "请写明驳回原因：教师需要知道要修改什么。",
    "library.error.need_title": "每个条目都需要标题。",
    "library.error.network": "无法连接课联服务器。请检查网络连接后重试。",
    "library.error.server": "服务器拒绝了请求：{message}",
    "library.error.media": "这节课无法在这里播放。请稍后重试，或联系学校。",
  },
};

let current = "en";

function storedLanguage() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

/** The language to start with: the one chosen before, else the browser's, else English. */
export function initialLanguage() {
  const stored = storedLanguage();
  if (stored && stored in dictionaries) return stored;
  const preferred = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  for (const tag of preferred) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base in dictionaries) return base;
  }
  return "en";
}

export function language() {
  return current;
}

/** The text for `key` in the current language, with {name} placeholders filled from `vars`. */
/** The BCP 47 locale of the current language, for dates and numbers (Intl). */
export function locale() {
  return language() === "zh" ? "zh-CN" : "en";
}

export function t(key, vars = {}) {
  const text = dictionaries[current][key] ?? dictionaries.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

/** Show `key` in `element` now and after every language switch. */
export function setText(element, key, vars) {
  element.dataset.i18n = key;
  if (vars && Object.keys(vars).length) element.dataset.i18nVars = JSON.stringify(vars);
  else delete element.dataset.i18nVars;
  element.textContent = t(key, vars);
}

/** An error banner (the page's and the console's): show `key` with the error `code` as a test hook. */
export function showBanner(banner, textElement, code, key, vars = {}) {
  setText(textElement, key, vars);
  banner.dataset.code = code;
  banner.hidden = false;
}

export function hideBanner(banner, textElement) {
  banner.hidden = true;
  delete banner.dataset.code;
  textElement.textContent = "";
  delete textElement.dataset.i18n;
}

// A title also becomes the accessible name of elements that show no text (icons, signal bars).
function applyTitle(element, text) {
  element.title = text;
  if (!element.textContent.trim()) element.setAttribute("aria-label", text);
}

/** Same as setText for the title (tooltip) of an element. */
export function setTitle(element, key, vars) {
  element.dataset.i18nTitle = key;
  if (vars && Object.keys(vars).length) element.dataset.i18nTitleVars = JSON.stringify(vars);
  else delete element.dataset.i18nTitleVars;
  applyTitle(element, t(key, vars));
}

function vars(json) {
  if (!json) return {};
  try {
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/** Translate every marked element under `root`. */
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n, vars(el.dataset.i18nVars));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) {
    applyTitle(el, t(el.dataset.i18nTitle, vars(el.dataset.i18nTitleVars)));
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
}

/** A page's language menu: the page starts in the reader's language, the menu switches it, and
 *  `redraw` (if given) runs after every switch, for text the page composes itself. */
export function languageMenu(select, redraw) {
  setLanguage(initialLanguage(), false);
  select.value = language();
  select.addEventListener("change", () => setLanguage(select.value));
  document.addEventListener("kelian:language", () => {
    select.value = language();
    if (redraw) redraw();
  });
}

/** Switch language, remember the choice and re-translate the page. */
export function setLanguage(lang, remember = true) {
  if (!(lang in dictionaries)) lang = "en";
  current = lang;
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t(document.documentElement.dataset.titleKey || "app.title");
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, lang);
    } catch {
      // private mode or storage disabled: the choice lasts for this page only
    }
  }
  translate(document);
  // for text a page composes itself (dates, numbers in the reader's format)
  document.dispatchEvent(new CustomEvent("kelian:language", { detail: { lang } }));
}
