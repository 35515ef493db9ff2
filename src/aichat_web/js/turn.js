// The turn events that write an answer (an AnswerView, answer.js).
//
// runTurn() reads one SSE response (StreamChat or ResolveToolCalls) into a view, so an
// approved turn continues in the same message. A stream that ends without its turnEnded
// (a network cut, a proxy restart) is resumed from the last `sequence` seen with
// StreamTurnEvents, a few times with backoff, into the same view; events already shown
// are skipped by their sequence.

import { api, ApiError } from "./api.js";
import { sseEvents } from "./sse.js";
import { toastError } from "./toast.js";
import { approvalCards } from "./approvals.js";

// Waits before each attempt to resume a dropped stream (ms); progress starts them over.
const RESUME_DELAYS_MS = [250, 500, 1000, 2000, 4000];

// Reads one turn's events into `view`. `start` makes the request (a Promise<Response>);
// `hooks.resolve(decisions)` continues a turn waiting for approval; `hooks.signal` is the
// turn's Stop; `hooks.done(outcome)` is told how the turn ended: a TurnOutcome name,
// "STOPPED", "DROPPED" (resuming failed too), or "REFUSED" (the request itself was
// answered with an error).
export async function runTurn(view, start, hooks) {
  const seen = { lastSequence: 0, turn: "", ended: null };
  view.setThinking(true);
  const result = await read(view, start, hooks, seen);
  if (result.stopped) return stopped(view, hooks);
  if (result.error) {
    view.setStatus(`Not sent: ${result.error.message}`, "failed");
    toastError(result.error);
    return hooks.done("REFUSED");
  }
  if (!seen.ended) return onStreamDropped(view, seen, hooks);
  return hooks.done(seen.ended);
}

// One SSE response into the view. Resolves to {} when the stream ended (seen.ended says
// whether with its turnEnded), {stopped} on Stop, {error} when the request was refused.
async function read(view, start, hooks, seen) {
  try {
    const response = await start();
    for await (const event of sseEvents(response)) {
      const sequence = Number(event.sequence || 0);
      if (sequence && sequence <= seen.lastSequence) continue; // shown already
      seen.lastSequence = sequence || seen.lastSequence;
      seen.turn = event.turn || seen.turn;
      seen.ended = handle(view, event, hooks) || seen.ended;
    }
  } catch (error) {
    if (error.name === "AbortError") return { stopped: true };
    if (error instanceof ApiError) return { error };
    // A read error mid-stream: the connection broke.
  }
  return {};
}

function stopped(view, hooks) {
  nameCutOffAnswer(view);
  view.setStatus("Stopped: the answer above is incomplete (saved as such).", "incomplete");
  view.renderActions();
  return hooks.done("STOPPED");
}

// A stream ended without turnEnded: ask for the rest of the turn after the last event shown.
async function onStreamDropped(view, seen, hooks) {
  view.resumed = true;
  let failure = "";
  for (let attempt = 0; seen.turn && attempt < RESUME_DELAYS_MS.length; attempt++) {
    view.setStatus(
      `Connection lost; reconnecting (try ${attempt + 1} of ${RESUME_DELAYS_MS.length})…`,
      "reconnecting",
    );
    if (!(await pause(RESUME_DELAYS_MS[attempt], hooks.signal))) return stopped(view, hooks);
    const before = seen.lastSequence;
    const result = await read(
      view,
      async () => {
        const response = await api.streamTurnEvents(seen.turn, seen.lastSequence, hooks.signal);
        view.setThinking(true);
        return response;
      },
      hooks,
      seen,
    );
    if (result.stopped) return stopped(view, hooks);
    if (seen.ended) return hooks.done(seen.ended);
    if (result.error && !retriable(result.error)) {
      failure = ` The turn cannot be resumed: ${result.error.message.replace(/\.$/, "")}.`;
      break;
    }
    failure = result.error ? ` Last try: ${result.error.message.replace(/\.$/, "")}.` : "";
    if (seen.lastSequence > before) attempt = -1; // it got further: count again from 1
  }
  // No event named the turn yet (it broke before turnStarted): nothing to resume from.
  if (!seen.turn) failure = " The turn had not started, so it cannot be resumed.";
  view.setStatus(
    "Connection lost before the answer finished, and reconnecting failed." + failure +
      " What arrived is shown above; the server keeps what it produced as incomplete. " +
      "Reopen the chat to see the stored answer.",
    "incomplete",
  );
  view.renderActions();
  return hooks.done("DROPPED");
}

// The network, a gateway or the server being briefly away; a 4xx would say the same again.
function retriable(error) {
  return error.status === 0 || error.status === 429 || error.status >= 500;
}

// Resolves true after `ms`, or false at once when the turn is stopped meanwhile.
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

function handle(view, event, hooks) {
  if (event.turnStarted) {
    view.node.dataset.message = event.turnStarted.answerMessage || "";
    view.message = null; // a continuation (after approval) answers in messages of its own
    view.toolsSinceStart = false;
  } else if (event.reasoningDelta) {
    view.appendReasoning(event.reasoningDelta.text || "");
  } else if (event.textDelta) {
    view.appendText(event.textDelta.text || "");
  } else if (event.heartbeat) {
    view.setThinking(true, event.heartbeat.elapsed);
  } else if (event.toolCall) {
    view.toolsSinceStart = true;
    view.upsertToolCall(event.toolCall);
  } else if (event.approvalRequired) {
    view.toolsSinceStart = true;
    const calls = event.approvalRequired.toolCalls || [];
    for (const call of calls) view.upsertToolCall(call);
    view.approvals.append(approvalCards(calls, hooks.resolve));
    view.grew();
  } else if (event.turnEnded) {
    return ended(view, event.turnEnded);
  }
  return null;
}

function ended(view, turnEnded) {
  const outcome = turnEnded.outcome || "TURN_OUTCOME_UNSPECIFIED";
  nameCutOffAnswer(view, (turnEnded.answerMessages || []).at(-1));
  view.usage = turnEnded.usage || view.usage; // every round of the turn, and its cost
  view.thinking.finish();
  view.setThinking(false);
  view.render();
  if (outcome === "TURN_OUTCOME_AWAITING_APPROVAL") {
    view.setStatus("Waiting for your decision on the tool call above.", "awaiting");
  } else if (outcome === "TURN_OUTCOME_CANCELLED" && view.resumed) {
    // The page's turns are attached: losing the connection cancelled this one on the server.
    view.setStatus(
      "Connection lost, so the server stopped this answer; reconnected and showing all it " +
        "produced (stored as incomplete).",
      "incomplete",
    );
  } else if (outcome === "TURN_OUTCOME_CANCELLED") {
    view.setStatus("Cancelled: the answer above is incomplete.", "incomplete");
  } else if (outcome === "TURN_OUTCOME_FAILED") {
    const message = turnEnded.error?.message || "the turn failed";
    view.setStatus(`Failed: ${message}`, view.text ? "incomplete" : "failed");
    toastError({ message, reason: reasonOf(turnEnded.error) }, "The answer failed");
  } else {
    view.finishFromMessage(turnEnded.message);
  }
  if (outcome !== "TURN_OUTCOME_AWAITING_APPROVAL") view.renderActions();
  return outcome;
}

// A turn cut off (Stop, CANCELLED) ends without `message`; its text is still a stored
// message that can be rated: the last of answerMessages when sent, else turnStarted's
// answerMessage as long as no tool call began a further round since.
function nameCutOffAnswer(view, last) {
  if (view.message?.name) return;
  const name = last || (view.toolsSinceStart ? "" : view.node.dataset.message);
  if (name) view.message = { name };
}

function reasonOf(status) {
  return (status?.details || []).find((d) => String(d["@type"]).endsWith("ErrorInfo"))?.reason;
}
