// The REST API through Envoy, same origin: every call carries the page's token as
// `Authorization: Bearer` (never in a URL, so never in an access log); same-origin
// cookies go along too, for deployments whose auth server reads those.
//
// Errors come back as JSON google.rpc.Status bodies; they become ApiError with the
// server's message and its ErrorInfo reason.

import { token } from "./auth.js";

const BASE = "/v1/chat";
const SESSIONS_PAGE = 30;

export class ApiError extends Error {
  constructor(status, message, reason, body) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.body = body;
  }
}

let onUnauthenticated = () => {};

// main.js sets this: a 401 anywhere sends the user to the sign-in message.
export function setUnauthenticatedHandler(handler) {
  onUnauthenticated = handler;
}

export function errorFromStatus(httpStatus, body) {
  const info = (body?.details || []).find((d) => String(d["@type"]).endsWith("google.rpc.ErrorInfo"));
  const message = body?.message || `HTTP ${httpStatus}`;
  return new ApiError(httpStatus, message, info?.reason || "", body);
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = { message: `${response.status} ${response.statusText}` };
  }
  const error = errorFromStatus(response.status, body);
  if (response.status === 401) onUnauthenticated(error);
  return error;
}

// fetch with the token; resolves to the Response when it is 2xx, else throws ApiError.
export async function request(path, { method = "GET", body, query, signal, accept } = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const headers = {};
  if (token()) headers.authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  if (accept) headers.accept = accept;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "The server cannot be reached (network error)", "NETWORK_ERROR");
  }
  if (!response.ok) throw await failure(response);
  return response;
}

async function json(path, options) {
  return (await request(path, options)).json();
}

// The one place a session id from the address bar becomes a resource name.
export function sessionName(id) {
  return `sessions/${id}`;
}

export const api = {
  listSessions: (pageToken) =>
    json("/sessions", { query: { pageSize: SESSIONS_PAGE, pageToken } }),
  getSession: (name) => json(`/${name}`),
  createSession: (session) => json("/sessions", { method: "POST", body: session }),
  updateSession: (name, fields) =>
    json(`/${name}`, {
      method: "PATCH",
      body: fields,
      query: { updateMask: Object.keys(fields).join(",") },
    }),
  deleteSession: (name) => json(`/${name}`, { method: "DELETE" }),
  async listMessages(name) {
    const messages = [];
    let pageToken = "";
    do {
      const page = await json(`/${name}/messages`, { query: { pageSize: 1000, pageToken } });
      messages.push(...(page.messages || []));
      pageToken = page.nextPageToken;
    } while (pageToken);
    return messages;
  },
  listModels: () => json("/models"),
  listTools: () => json("/mcp/tools"),
  // Server-Sent Events responses (read with sse.js); aborting `signal` hangs up, which
  // cancels the turn on the server (its partial answer is stored as INCOMPLETE). The page's
  // turns say `detached: false` whatever the server's default: a detached turn has no way
  // to be cancelled, and Stop must stop it.
  streamChat: (name, body, signal) =>
    request(`/${name}:streamChat`, {
      method: "POST",
      body: { ...body, options: { ...body.options, detached: false } },
      signal,
      accept: "text/event-stream",
    }),
  resolveToolCalls: (name, decisions, signal) =>
    request(`/${name}:resolveToolCalls`, {
      method: "POST",
      body: { decisions, detached: false },
      signal,
      accept: "text/event-stream",
    }),
  // The rest of a turn's events after `afterSeq` (stored, then live); hanging up this one
  // cancels nothing.
  streamTurnEvents: (turn, afterSeq, signal) =>
    request(`/${turn}:streamEvents`, {
      query: { afterSeq: String(afterSeq) },
      signal,
      accept: "text/event-stream",
    }),
  // rating: FEEDBACK_RATING_THUMBS_UP / _DOWN, or _UNSPECIFIED to clear (comment must be empty).
  setFeedback: (name, rating, comment = "") =>
    json(`/${name}:setFeedback`, { method: "POST", body: { rating, comment } }),
  exportSession: (name, format) => request(`/${name}:export`, { query: { format } }),
  // The caller's own usage today and this month, and their daily budgets (GetMyUsage).
  myUsage: () => json("/usage"),
};
