// The REST client of the console: every call carries the API key the user
// gave (sessionStorage), a 401 asks for one and retries, and errors become
// ApiError with the API's status, code and message.

const KEY = 'streamhouse.apiKey';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  // text is what the page shows: "403 permission_denied: API key …".
  get text() {
    return `${this.status} ${this.code}: ${this.message}`;
  }
}

let keyPrompt = null; // one pending prompt shared by concurrent 401s

export function apiKey() {
  return sessionStorage.getItem(KEY) || '';
}

export function setApiKey(k) {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
}

// askKey opens the key dialog and resolves when the user saved a key
// (true) or closed it (false).
export function askKey(reason) {
  if (keyPrompt) return keyPrompt;
  const dlg = document.getElementById('key-dialog');
  document.getElementById('key-reason').textContent = reason;
  const input = document.getElementById('key-input');
  input.value = '';
  keyPrompt = new Promise((resolve) => {
    dlg.addEventListener('close', () => {
      keyPrompt = null;
      if (dlg.returnValue === 'save' && input.value.trim()) {
        setApiKey(input.value.trim());
        resolve(true);
      } else {
        if (dlg.returnValue === 'clear') setApiKey('');
        resolve(false);
      }
    }, { once: true });
  });
  dlg.showModal();
  input.focus();
  return keyPrompt;
}

async function once(method, path, body, signal) {
  const headers = { Accept: 'application/json' };
  const k = apiKey();
  if (k) headers.Authorization = 'Bearer ' + k;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `the agent did not answer (${e.message})`);
  }
  if (resp.status === 204) return null;
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok) {
    const e = data && data.error;
    const err = new ApiError(resp.status, e ? e.code : 'http_' + resp.status, e ? e.message : text.slice(0, 200) || resp.statusText);
    err.data = data;
    throw err;
  }
  return data;
}

// api calls the REST API; on 401 it asks for a key once and retries.
export async function api(method, path, body, { signal } = {}) {
  try {
    return await once(method, path, body, signal);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      const reason = apiKey() ? `The API key was refused: ${e.message}` : 'This cluster requires an API key.';
      if (await askKey(reason)) return once(method, path, body, signal);
    }
    throw e;
  }
}

export const get = (path, opts) => api('GET', path, undefined, opts);

// probe reads a status endpoint that answers JSON on success and failure
// alike (/ready): it returns {ok, status, body} and never asks for a key.
export async function probe(path) {
  try {
    const resp = await fetch(path, { headers: { Accept: 'application/json' } });
    let body = null;
    try { body = await resp.json(); } catch { body = null; }
    return { ok: resp.ok, status: resp.status, body };
  } catch (e) {
    return { ok: false, status: 0, body: { reason: `the agent did not answer (${e.message})` } };
  }
}

export const enc = encodeURIComponent;
