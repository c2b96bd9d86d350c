// Talking to the server: the same JSON API every other client uses, authenticated by the
// session cookie (HttpOnly: this code never sees the token), and the live events.

/// An answer other than 2xx, in the server's words: `message`, `code`, and `field` for a field
/// whose value cannot be used.
export class ApiError extends Error {
  constructor(status, body) {
    super(body.error);
    this.status = status;
    this.code = body.code;
    this.field = body.field;
  }
}

const listeners = { unauthorized: [] };

/// Called when the session has ended (401 on a request that needed it).
export function onUnauthorized(f) {
  listeners.unauthorized.push(f);
}

export async function api(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { error: `the server cannot be reached (${e.message})`, code: 'network' });
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new ApiError(
      res.status,
      data && typeof data.error === 'string' ? data : { error: `the server answered ${res.status} ${res.statusText}`, code: 'http' },
    );
    if (res.status === 401 && !path.startsWith('/api/auth/')) listeners.unauthorized.forEach((f) => f(err));
    throw err;
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

/// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/// Upload a file with progress: resolves with the JSON answer, rejects with an ApiError.
export function upload(path, file, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    for (const [k, v] of Object.entries(headers || {})) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener('progress', (e) => e.lengthComputable && onProgress(e.loaded, e.total));
    xhr.addEventListener('load', () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data && data.error ? data : { error: `the server answered ${xhr.status}`, code: 'http' }));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, { error: 'the upload was cut off', code: 'network' })));
    xhr.send(file);
  });
}

/// The live events of `/api/ws`: `subscribe(f)` calls `f(event)` for each until the returned
/// function is called. One connection, opened on first use, reopened when it drops.
const subscribers = new Set();
let socket = null;
let retry = 1000;

function connect() {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws`;
  socket = new WebSocket(url);
  socket.addEventListener('open', () => {
    retry = 1000;
    // Whatever happened while disconnected: let pages refresh.
    subscribers.forEach((f) => f({ event: 'connected' }));
  });
  socket.addEventListener('message', (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    subscribers.forEach((f) => f(ev));
  });
  socket.addEventListener('close', () => {
    socket = null;
    if (subscribers.size > 0) {
      setTimeout(() => subscribers.size > 0 && !socket && connect(), retry);
      retry = Math.min(retry * 2, 30000);
    }
  });
}

export function subscribe(f) {
  subscribers.add(f);
  if (!socket) connect();
  return () => subscribers.delete(f);
}

export function disconnect() {
  subscribers.clear();
  if (socket) socket.close();
}
