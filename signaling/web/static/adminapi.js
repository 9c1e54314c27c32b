// What the pages that use the admin API share (the switchover console, the library's review): the
// HTTP Basic credentials kept in this tab only, requests that turn every failure into an ApiError
// a page can explain, and the sign-in form's checks.

/** A refused or failed request: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- storage: this tab only ------------------------------------------------------------------------

export function stored(key) {
  try {
    return sessionStorage.getItem(key) || "";
  } catch {
    return "";
  }
}

export function store(key, value) {
  try {
    if (value) sessionStorage.setItem(key, value);
    else sessionStorage.removeItem(key);
  } catch {
    // storage disabled: the sign-in lasts until the page is reloaded
  }
}

// -- requests --------------------------------------------------------------------------------------

export function basic({ key, secret }) {
  // btoa takes Latin-1 only; a key or secret may be any UTF-8 (RFC 7617's charset)
  const bytes = new TextEncoder().encode(`${key}:${secret}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

/** fetch, then the JSON body; ApiError for no answer or an error answer. `onResponse` sees the
 * response first (the console reads the server's clock from it). */
export async function call(url, options, onResponse = null) {
  let response;
  try {
    // credentials "omit": no browser login prompt on a 401, the page says what to do
    response = await fetch(url, { credentials: "omit", cache: "no-store", ...options });
  } catch (err) {
    throw new ApiError(0, "network", String((err && err.message) || err));
  }
  if (onResponse) onResponse(response);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null; // a proxy's HTML error page, say
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || response.statusText);
  }
  return data;
}

/** A request to /api/v1 with the key and secret. */
export function adminCall(credentials, method, path, body, onResponse = null) {
  if (!credentials) return Promise.reject(new ApiError(401, "unauthorized", "not signed in"));
  const headers = { Authorization: basic(credentials), Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
  return call(`api/v1/${path}`, init, onResponse); // relative: a reverse proxy's prefix works
}

/**
 * The sign-in form: a key, a secret and a name for the audit, each required, then tried with
 * `check(credentials)`. The credentials and the name, or null once `showError` or `handleError`
 * has said why (a refused secret is cleared, for typing again).
 */
export async function signInForm({ key, secret, name, nameError, button, busy, showError, handleError, check }) {
  const credentials = { key: key.value.trim(), secret: secret.value };
  const who = name.value.trim();
  if (!credentials.key || !credentials.secret) {
    showError("need_credentials", "console.error.need_credentials");
    (credentials.key ? secret : key).focus();
    return null;
  }
  if (!who) {
    showError(...nameError);
    name.focus();
    return null;
  }
  button.disabled = true;
  busy.hidden = false;
  try {
    await check(credentials);
  } catch (err) {
    handleError(err);
    if (err.status === 401) secret.value = "";
    return null;
  } finally {
    button.disabled = false;
    busy.hidden = true;
  }
  return { credentials, name: who };
}
