// The REST API through Envoy, same origin: every call carries the page's token as
// `Authorization: Bearer` (never in a URL, so never in an access log); same-origin
// cookies go along too, for deployments whose auth server reads those.
//
// Errors come back as JSON google.rpc.Status bodies; they become ApiError with the
// server's message and its ErrorInfo reason. When the backend is down, Envoy answers
// for it with its own words ("upstream connect error…"): those become one plain sentence.

import { token } from "./auth.js";

const BASE = "/v1/chat";
const SESSIONS_PAGE = 30;
const UNREACHABLE = "The chat service is not reachable right now; try again in a moment";
const GATEWAY_REASONS = new Set(["GATEWAY_ERROR", "BACKEND_UNAVAILABLE", "GATEWAY_TIMEOUT"]);

export class ApiError extends Error {
  constructor(status, message, reason, body) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.body = body;
  }

  // Worth trying again as it is: the network, a gateway or the server briefly away.
  get retriable() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

let onUnauthenticated = () => {};

// main.js sets this: a 401 anywhere sends the user to the sign-in message.
export function setUnauthenticatedHandler(handler) {
  onUnauthenticated = handler;
}

export function errorFromStatus(httpStatus, body) {
  const info = (body?.details || []).find((d) => String(d["@type"]).endsWith("google.rpc.ErrorInfo"));
  const reason = info?.reason || "";
  if (httpStatus >= 502 && httpStatus <= 504 && (GATEWAY_REASONS.has(reason) || !info)) {
    // Envoy's own reply: the backend (or its health) is away. Its text is for logs.
    console.warn("gateway:", body?.message);
    return new ApiError(httpStatus, UNREACHABLE, "BACKEND_UNAVAILABLE", body);
  }
  return new ApiError(httpStatus, body?.message || `HTTP ${httpStatus}`, reason, body);
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

const STREAM = "text/event-stream";

export const api = {
  listSessions: (pageToken) =>
    json("/sessions", { query: { pageSize: SESSIONS_PAGE, pageToken } }),
  getSession: (name) => json(`/${name}`),
  createSession: (session, requestId) =>
    json("/sessions", { method: "POST", body: session, query: { requestId } }),
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
  // Server-Sent Events responses (read with sse.js). The page's turns are detached: they
  // run on without the page (a reload, another chat, a closed tab), and aborting `signal`
  // only stops reading. Stop is cancelTurn.
  streamChat: (name, body, signal) =>
    request(`/${name}:streamChat`, {
      method: "POST",
      body: { ...body, options: { ...body.options, detached: true } },
      signal,
      accept: STREAM,
    }),
  resolveToolCalls: (name, decisions, signal) =>
    request(`/${name}:resolveToolCalls`, {
      method: "POST",
      body: { decisions, detached: true },
      signal,
      accept: STREAM,
    }),
  // A turn's events after `afterSeq` (stored, then live, on any replica).
  streamTurnEvents: (turn, afterSeq, signal) =>
    request(`/${turn}:streamEvents`, { query: { afterSeq: String(afterSeq) }, signal, accept: STREAM }),
  // Stops the running turn wherever it runs; its events then end with turnEnded CANCELLED.
  cancelTurn: (turn) => json(`/${turn}:cancel`, { method: "POST", body: {} }),
  // rating: FEEDBACK_RATING_THUMBS_UP / _DOWN, or _UNSPECIFIED to clear (comment must be empty).
  setFeedback: (name, rating, comment = "") =>
    json(`/${name}:setFeedback`, { method: "POST", body: { rating, comment } }),
  // The conversation tree: a new answer to a question, an edited question (both stream
  // like streamChat, detached); a sibling's branch made the active path; a copy of the
  // path up to a message as a new session.
  regenerateAnswer: (name, body, signal) =>
    request(`/${name}:regenerate`, {
      method: "POST",
      body: { ...body, options: { ...body.options, detached: true } },
      signal,
      accept: STREAM,
    }),
  editMessage: (name, body, signal) =>
    request(`/${name}:edit`, {
      method: "POST",
      body: { ...body, options: { ...body.options, detached: true } },
      signal,
      accept: STREAM,
    }),
  switchBranch: (name, exact = false) => json(`/${name}:switchBranch`, { method: "POST", body: { exact } }),
  forkSession: (message, requestId) => json(`/${message}:fork`, { method: "POST", body: { requestId } }),
  // The caller's own tokens and cost, today and this month, and their daily budgets.
  getMyUsage: () => json("/usage"),
  exportSession: (name, format, includeReasoning = false) =>
    request(`/${name}:export`, { query: { format, includeReasoning: includeReasoning ? "true" : "" } }),
};
