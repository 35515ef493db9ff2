// A second-language client for aichat: @grpc/grpc-js with stubs built at run time from
// our .proto files, the way a Node service would use the contract.
//
// Usage: node client.js <scenario>   (TARGET, AICHAT_USER, PROTO_ROOT, GOOGLE_PROTOS in env)
// Prints one JSON object with what it observed; the Python test asserts on it.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const target = process.env.TARGET;
const user = process.env.AICHAT_USER;
const protoRoot = process.env.PROTO_ROOT;
const googleProtos = process.env.GOOGLE_PROTOS;

const definition = protoLoader.loadSync(
  ["aichat/v1/session_service.proto", "aichat/v1/chat_service.proto"],
  { includeDirs: [protoRoot, googleProtos], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
const aichat = grpc.loadPackageDefinition(definition).aichat.v1;
const creds = grpc.credentials.createInsecure();
const sessions = new aichat.SessionService(target, creds);
const chat = new aichat.ChatService(target, creds);

// google.rpc.Status and its details, to read ErrorInfo from grpc-status-details-bin.
const rpcRoot = new protobuf.Root();
rpcRoot.resolvePath = (_origin, target) => path.join(googleProtos, target);
rpcRoot.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
const Status = rpcRoot.lookupType("google.rpc.Status");
const ErrorInfo = rpcRoot.lookupType("google.rpc.ErrorInfo");

function metadata() {
  const md = new grpc.Metadata();
  md.set("x-user-id", user);
  return md;
}

function errorInfo(err) {
  const raw = err.metadata && err.metadata.get("grpc-status-details-bin")[0];
  if (!raw) return null;
  const status = Status.decode(raw);
  for (const detail of status.details) {
    if (detail.type_url.endsWith("google.rpc.ErrorInfo")) {
      const info = ErrorInfo.decode(detail.value);
      return { reason: info.reason, domain: info.domain, metadata: info.metadata };
    }
  }
  return null;
}

function unary(client, method, request, options = {}) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), options, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function streamTurn(request, { cancelAfterDeltas = null, deadlineMs = null, method = "StreamChat" } = {}) {
  return new Promise((resolve) => {
    const options = deadlineMs ? { deadline: new Date(Date.now() + deadlineMs) } : {};
    const call = chat[method](request, metadata(), options);
    const events = [];
    let deltas = 0;
    call.on("data", (event) => {
      events.push(event);
      if (event.event === "text_delta") {
        deltas += 1;
        if (cancelAfterDeltas !== null && deltas >= cancelAfterDeltas) call.cancel();
      }
    });
    call.on("error", (err) => resolve({ events, code: grpc.status[err.code], errorInfo: errorInfo(err) }));
    call.on("end", () => resolve({ events, code: "OK", errorInfo: null }));
  });
}

// A detached turn cut after `cutAfter` events, then resumed after the last one seen.
function cutThenResume(request, cutAfter) {
  return new Promise((resolve, reject) => {
    const call = chat.StreamChat(request, metadata());
    const seen = [];
    call.on("data", (event) => {
      seen.push(event);
      if (seen.length === cutAfter) {
        call.cancel();
        const last = seen[seen.length - 1];
        const resumed = chat.StreamTurnEvents({ name: last.turn, after_seq: last.sequence }, metadata());
        const rest = [];
        resumed.on("data", (e) => rest.push(e));
        resumed.on("error", reject);
        resumed.on("end", () => resolve({ seen, rest }));
      }
    });
    call.on("error", (err) => {
      if (err.code !== grpc.status.CANCELLED) reject(err);
    });
  });
}

function summary(result) {
  return {
    code: result.code,
    errorInfo: result.errorInfo,
    kinds: result.events.map((e) => e.event),
    text: result.events.filter((e) => e.event === "text_delta").map((e) => e.text_delta.text).join(""),
    outcome: (result.events.find((e) => e.event === "turn_ended") || { turn_ended: {} }).turn_ended.outcome || null,
  };
}

async function main() {
  const scenario = process.argv[2];
  const out = { scenario };
  const session = await unary(sessions, "CreateSession", { session: { display_name: "from node" } });
  out.session = session.name;
  if (scenario === "turn") {
    out.turn = summary(await streamTurn({ session: session.name, text: "hello from node" }));
  } else if (scenario === "cancel") {
    out.turn = summary(await streamTurn({ session: session.name, text: "long please" }, { cancelAfterDeltas: 2 }));
  } else if (scenario === "deadline") {
    out.turn = summary(await streamTurn({ session: session.name, text: "hang please" }, { deadlineMs: 500 }));
  } else if (scenario === "resume") {
    const request = { session: session.name, text: "long please", options: { detached: true } };
    const { seen, rest } = await cutThenResume(request, 50);
    const text = (events) => events.filter((e) => e.event === "text_delta").map((e) => e.text_delta.text).join("");
    out.resume = {
      seen: seen.map((e) => Number(e.sequence)),
      rest: rest.map((e) => Number(e.sequence)),
      turns: [...new Set([...seen, ...rest].map((e) => e.turn))],
      kinds: rest.map((e) => e.event),
      text: text(seen) + text(rest),
      stored: rest[rest.length - 1].turn_ended.message.text,
    };
  } else if (scenario === "reasoning") {
    // A thinking model with this turn's own budget; the reasoning apart from the answer,
    // its usage and cost, then the stored message and the caller's own usage.
    const request = { session: session.name, text: "2+2?", options: { thinking_budget_tokens: 1500 } };
    const result = await streamTurn(request);
    const ended = result.events.find((e) => e.event === "turn_ended").turn_ended;
    const listed = await unary(sessions, "ListMessages", { parent: session.name });
    const mine = await unary(sessions, "GetMyUsage", {});
    out.reasoning = {
      ...summary(result),
      thought: result.events.filter((e) => e.event === "reasoning_delta").map((e) => e.reasoning_delta.text).join(""),
      usage: ended.usage,
      stored: listed.messages[listed.messages.length - 1].reasoning,
      today: mine.today,
    };
  } else if (scenario === "tree") {
    // The conversation tree: regenerate an answer, edit a question, switch back, fork.
    const started = (result) => result.events[0].turn_started;
    const ended = (result) => result.events[result.events.length - 1].turn_ended;
    const shown = async (extra = {}) =>
      (await unary(sessions, "ListMessages", { parent: session.name, ...extra })).messages.map((m) => ({
        name: m.name, text: m.text, parent: m.parent, index: m.sibling_index, count: m.sibling_count,
        previous: m.previous_sibling, next: m.next_sibling,
      }));
    await streamTurn({ session: session.name, text: "Q1" });
    const second = await streamTurn({ session: session.name, text: "Q2" });
    const { user_message: q2, answer_message: a2 } = started(second);
    const again = await streamTurn({ name: a2 }, { method: "RegenerateAnswer" });
    const edited = await streamTurn({ name: q2, text: "Q2 edited" }, { method: "EditMessage" });
    const afterEdit = await shown();
    const switched = await unary(sessions, "SwitchBranch", { name: q2 });
    const afterSwitch = await shown();
    const fork = await unary(sessions, "ForkSession", { message: a2, session_id: "" });
    const forked = (await unary(sessions, "ListMessages", { parent: fork.name })).messages.map((m) => m.text);
    let missing = null;
    try {
      await unary(sessions, "SwitchBranch", { name: `${session.name}/messages/nope` });
    } catch (err) {
      missing = { code: grpc.status[err.code], errorInfo: errorInfo(err) };
    }
    out.tree = {
      q2, a2,
      again: { ...summary(again), user_message: started(again).user_message, stored: ended(again).message.text },
      edited: { ...summary(edited), stored: ended(edited).message.text },
      afterEdit, afterSwitch, active: switched.active_message, fork: fork.name, forked, missing,
      all: (await shown({ all_branches: true })).map((m) => m.text),
    };
  } else if (scenario === "errors") {
    try {
      await unary(sessions, "GetSession", { name: "sessions/missing-one" });
      out.error = null;
    } catch (err) {
      out.error = { code: grpc.status[err.code], errorInfo: errorInfo(err) };
    }
  }
  console.log(JSON.stringify(out));
  sessions.close();
  chat.close();
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
