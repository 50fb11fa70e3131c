// The server's own APIs, same origin. The API key (when the server has one) is kept in this browser's
// localStorage and sent as a bearer token; a 401 asks the user for it instead of the server opening up.
const KEY = 'inferno.apiKey';
let askForKey = () => {};

export class AuthNeeded extends Error {}

export function onAuthNeeded(fn) {
  askForKey = fn;
}

export function apiKey() {
  return localStorage.getItem(KEY) || '';
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

function errorText(body, status) {
  const e = body && body.error;
  if (typeof e === 'string') return e;
  if (e && typeof e.message === 'string') return e.message;
  return `HTTP ${status}`;
}

export async function request(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    askForKey();
    throw new AuthNeeded('this server needs an API key');
  }
  if (!res.ok) {
    let parsed = null;
    try { parsed = await res.json(); } catch { /* not JSON */ }
    throw new Error(errorText(parsed, res.status));
  }
  return res;
}

export async function getJSON(path) {
  return (await request(path)).json();
}

export async function postJSON(path, body) {
  const res = await request(path, { method: 'POST', body });
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

// The objects of an NDJSON stream (Ollama's /api/chat and /api/pull) as they arrive; an {"error"} line throws.
export async function* ndjson(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (!line) continue;
      const obj = JSON.parse(line);
      if (obj.error) throw new Error(errorText(obj, 500));
      yield obj;
    }
  }
  if (buffer.trim()) {
    const obj = JSON.parse(buffer);
    if (obj.error) throw new Error(errorText(obj, 500));
    yield obj;
  }
}

// Models with the details the picker shows: /api/tags, plus /api/show for context length and capabilities.
export async function listModels() {
  const { models } = await getJSON('/api/tags');
  return Promise.all(models.map(async (m) => {
    try {
      const show = await postJSON('/api/show', { model: m.name });
      const info = show.model_info || {};
      const ctxKey = Object.keys(info).find((k) => k.endsWith('.context_length'));
      return { ...m, capabilities: show.capabilities || [], context: ctxKey ? info[ctxKey] : null };
    } catch (e) {
      if (e instanceof AuthNeeded) throw e;
      return { ...m, capabilities: [], context: null };
    }
  }));
}

export function humanSize(bytes) {
  if (!bytes && bytes !== 0) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let n = bytes;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}
