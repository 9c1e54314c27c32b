// Every text the classroom page shows, in one place: one dictionary per language.
//
// Static text is marked in index.html with data-i18n (text content), data-i18n-placeholder,
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

    "controls.label": "Classroom controls",
    "controls.mic.on": "Mute",
    "controls.mic.off": "Unmute",
    "controls.camera.on": "Stop video",
    "controls.camera.off": "Start video",
    "controls.screen.on": "Stop sharing",
    "controls.screen.off": "Share screen",
    "controls.leave": "Leave",
    "controls.enable_audio": "Click to turn on sound",

    "quality.excellent": "Connection: excellent",
    "quality.good": "Connection: good",
    "quality.poor": "Connection: poor",
    "quality.lost": "Connection: lost",

    "state.connecting": "Connecting…",
    "state.reconnecting": "Reconnecting… the connection was interrupted, trying again.",

    "notice.left": "You left the classroom.",
    "notice.muted_by_teacher": "The teacher turned off your microphone.",
    "notice.camera_off_by_teacher": "The teacher turned off your camera.",
    "notice.viewer": "You are watching: this token does not allow sending camera or microphone.",
    "notice.screen_ended": "Screen sharing stopped.",
    "notice.track_unsupported": "This browser cannot play {name}'s {codec} video.",

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
    "error.generic": "Something went wrong: {message}",
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

    "controls.label": "课堂控制",
    "controls.mic.on": "静音",
    "controls.mic.off": "取消静音",
    "controls.camera.on": "关闭视频",
    "controls.camera.off": "开启视频",
    "controls.screen.on": "停止共享",
    "controls.screen.off": "共享屏幕",
    "controls.leave": "离开",
    "controls.enable_audio": "点击开启声音",

    "quality.excellent": "网络：很好",
    "quality.good": "网络：良好",
    "quality.poor": "网络：较差",
    "quality.lost": "网络：已断开",

    "state.connecting": "正在连接…",
    "state.reconnecting": "正在重新连接…连接中断了，正在重试。",

    "notice.left": "你已离开课堂。",
    "notice.muted_by_teacher": "老师关闭了你的麦克风。",
    "notice.camera_off_by_teacher": "老师关闭了你的摄像头。",
    "notice.viewer": "你正在观看：此令牌不允许发送摄像头或麦克风。",
    "notice.screen_ended": "屏幕共享已停止。",
    "notice.track_unsupported": "此浏览器无法播放{name}的 {codec} 视频。",

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
    "error.generic": "出现问题：{message}",
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

/** Switch language, remember the choice and re-translate the page. */
export function setLanguage(lang, remember = true) {
  if (!(lang in dictionaries)) lang = "en";
  current = lang;
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, lang);
    } catch {
      // private mode or storage disabled: the choice lasts for this page only
    }
  }
  translate(document);
}
