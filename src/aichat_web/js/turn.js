// Reading a turn's events into an answer (an AnswerView, answer.js).
//
// The page's turns are detached (api.js): they run on the server whatever the page does.
// readTurn() reads one turn: from the request that starts it (StreamChat,
// ResolveToolCalls) or, when the page comes back to a running turn, from StreamTurnEvents
// after a sequence number. A stream that ends without its turnEnded (a network cut, a
// proxy restart) is resumed after the last `sequence` shown, a few times with backoff;
// events already shown are skipped by sequence. TurnControl is the running turn's Stop
// (CancelTurn, sent again after a cut until the server hears it) and its Leave (stop
// reading: the turn goes on).

import { api, ApiError } from "./api.js";
import { el } from "./dom.js";
import { sseEvents } from "./sse.js";
import { toastError } from "./toast.js";
import { EVENT_HANDLERS, showOutcome } from "./turn_events.js";

// Waits before each attempt to resume a dropped stream (ms); progress starts them over.
const RESUME_DELAYS_MS = [250, 500, 1000, 2000, 4000];

export class TurnControl {
  constructor() {
    this.leaving = new AbortController();
    this.turn = "";
    this.stopping = false;
    this.cancelSent = false;
    this.view = null;
  }

  get signal() {
    return this.leaving.signal;
  }

  // Stop reading; the turn itself runs on (another chat was opened, say).
  leave() {
    this.leaving.abort();
  }

  named(turn) {
    if (this.turn) return;
    this.turn = turn;
    this.onNamed?.(turn);
    if (this.stopping) this.sendCancel();
  }

  // Stop: the server cancels the turn, and its stream then ends with turnEnded CANCELLED.
  stop() {
    if (this.stopping) return;
    this.stopping = true;
    this.view?.setStatus("Stopping…", "stopping");
    if (this.turn) this.sendCancel();
  }

  async sendCancel() {
    if (this.cancelSent || !this.turn) return;
    this.cancelSent = true;
    try {
      await api.cancelTurn(this.turn);
    } catch (error) {
      this.cancelSent = false; // the next reconnection tries again
      if (!(error instanceof ApiError && error.retriable)) {
        this.stopping = false;
        toastError(error, "Could not stop the answer");
      } else {
        this.view?.setStatus("Stopping… (waiting for the connection)", "stopping");
      }
    }
  }
}

// Reads one turn into a view. `start()` makes the request (a Promise<Response>).
// `hooks.view` is the view, or null to pick it when turnStarted arrives
// (`hooks.pick(turnStarted)`: a turn the page comes back to). `hooks.resolve(decisions)`
// continues a turn waiting for approval; `hooks.toolCall(call)` routes a tool call update.
// Resolves to the TurnOutcome name, "LEFT" (stopped reading), "DROPPED" (resuming
// failed too) or "REFUSED" (the request itself was answered with an error: `.error`).
export async function readTurn(control, start, hooks, seen = { lastSequence: 0, ended: null }) {
  control.view?.setThinking(true);
  const result = await read(control, start, hooks, seen);
  if (result.left) return { outcome: "LEFT" };
  if (result.error) return { outcome: "REFUSED", error: result.error };
  if (!seen.ended) return resumeDropped(control, hooks, seen);
  return { outcome: seen.ended };
}

// One SSE response. Resolves to {} when the stream ended (seen.ended says whether with
// its turnEnded), {left} when the page stopped reading, {error} when refused.
async function read(control, start, hooks, seen) {
  try {
    const response = await start();
    for await (const event of sseEvents(response)) {
      const sequence = Number(event.sequence || 0);
      if (sequence && sequence <= seen.lastSequence) continue; // shown already
      seen.lastSequence = sequence || seen.lastSequence;
      if (event.turn) control.named(event.turn);
      if (!control.view && event.turnStarted) control.view = hooks.pick(event.turnStarted);
      if (!control.view) continue;
      const kind = Object.keys(EVENT_HANDLERS).find((key) => key in event);
      const outcome = kind ? EVENT_HANDLERS[kind](control.view, event[kind], hooks, control) : null;
      seen.ended = outcome || seen.ended;
    }
  } catch (error) {
    if (error.name === "AbortError") return { left: true };
    if (error instanceof ApiError) return { error };
    // A read error mid-stream: the connection broke.
  }
  return {};
}

// A stream ended without turnEnded: ask for the rest of the turn after the last event shown.
async function resumeDropped(control, hooks, seen) {
  const view = control.view;
  let failure = "";
  for (let attempt = 0; control.turn && attempt < RESUME_DELAYS_MS.length; attempt++) {
    const stopping = control.stopping ? " Your Stop is sent when it is back." : "";
    view?.setStatus(
      `Connection lost; reconnecting (try ${attempt + 1} of ${RESUME_DELAYS_MS.length})…${stopping}`,
      "reconnecting",
    );
    if (!(await pause(RESUME_DELAYS_MS[attempt], control.signal))) return { outcome: "LEFT" };
    if (control.stopping) control.sendCancel();
    const before = seen.lastSequence;
    const result = await read(
      control,
      async () => {
        const response = await api.streamTurnEvents(control.turn, seen.lastSequence, control.signal);
        control.view?.setThinking(true);
        return response;
      },
      hooks,
      seen,
    );
    if (result.left) return { outcome: "LEFT" };
    if (seen.ended) return { outcome: seen.ended };
    if (result.error && !result.error.retriable) {
      failure = ` The answer cannot be followed: ${result.error.message.replace(/\.$/, "")}.`;
      break;
    }
    failure = result.error ? ` Last try: ${result.error.message.replace(/\.$/, "")}.` : "";
    if (seen.lastSequence > before) attempt = -1; // it got further: count again from 1
  }
  // No event named the turn yet (it broke before turnStarted): nothing to resume from.
  if (!control.turn) failure = " The message may not have reached the server.";
  return { outcome: "DROPPED", failure };
}

// The status of an answer whose stream could not be resumed, with a Retry.
export function showDropped(view, failure, retry) {
  view.setStatus(
    "Connection lost, and reconnecting failed." + failure +
      " The server keeps writing the answer; what arrived is shown above.",
    "incomplete",
    " ",
    el("button", { type: "button", class: "link-button retry", text: "Retry", onclick: retry }),
  );
}

// Resolves true after `ms`, or false at once when the page stops reading meanwhile.
function pause(ms, signal) {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (value) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(value);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener("abort", onAbort);
  });
}

export { showOutcome };
