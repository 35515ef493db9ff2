// The official `openai` npm package, unchanged, against aichat's OpenAI-compatible API.
//   BASE_URL=http://127.0.0.1:8080/v1 TOKEN=… MODEL=… node openai_client.js <scenario>
// Prints one JSON object: what the SDK returned or raised, for the Python test to judge.
"use strict";

const OpenAI = require("openai");

const client = new OpenAI({
  baseURL: process.env.BASE_URL,
  apiKey: process.env.TOKEN,
  maxRetries: 0,
});
const model = process.env.MODEL;
const hi = [{ role: "user", content: "Hi from Node" }];

function failure(err) {
  return {
    class: err.constructor.name,
    status: err.status,
    code: err.code,
    param: err.param,
    type: err.type,
    message: err.message,
  };
}

async function refused(request) {
  try {
    await request();
    return { class: "none" };
  } catch (err) {
    return failure(err);
  }
}

const scenarios = {
  async chat() {
    const models = await client.models.list();
    const whole = await client.chat.completions.create({ model, messages: hi });
    const stream = await client.chat.completions.create({
      model,
      messages: hi,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    const chunks = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      if (chunk.choices.length) text += chunk.choices[0].delta.content || "";
    }
    const last = chunks[chunks.length - 1];
    return {
      models: models.data.map((m) => m.id),
      whole: {
        object: whole.object,
        content: whole.choices[0].message.content,
        finish: whole.choices[0].finish_reason,
        usage: whole.usage,
        session: whole.aichat.session,
      },
      stream: {
        objects: [...new Set(chunks.map((c) => c.object))],
        text,
        finish: chunks.filter((c) => c.choices.length).pop().choices[0].finish_reason,
        lastChoices: last.choices.length,
        usage: last.usage,
      },
    };
  },

  async errors() {
    return {
      unknownModel: await refused(() =>
        client.chat.completions.create({ model: "no-such-model", messages: hi }),
      ),
      unsupported: await refused(() =>
        client.chat.completions.create({ model, messages: hi, n: 2 }),
      ),
      badToken: await refused(() =>
        new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "nope", maxRetries: 0 }).models.list(),
      ),
      otherSession: await refused(() =>
        client.chat.completions.create(
          { model, messages: hi },
          { headers: { "X-Aichat-Session": process.env.OTHER_SESSION } },
        ),
      ),
    };
  },

  async tools() {
    const reply = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Weather in Oslo?" }],
      tools: [
        {
          type: "function",
          function: {
            name: "get_weather",
            parameters: { type: "object", properties: { city: { type: "string" } } },
          },
        },
      ],
    });
    const choice = reply.choices[0];
    return {
      finish: choice.finish_reason,
      calls: choice.message.tool_calls.map((c) => [
        c.id,
        c.function.name,
        JSON.parse(c.function.arguments),
      ]),
    };
  },

  async cancel() {
    // Hang up after the first words, as a user pressing Stop.
    const controller = new AbortController();
    const { data: stream, response } = await client.chat.completions
      .create({ model, messages: hi, stream: true }, { signal: controller.signal })
      .withResponse();
    const session = response.headers.get("x-aichat-session");
    let text = "";
    let id = "";
    let raised = null;
    try {
      for await (const chunk of stream) {
        id = chunk.id;
        text += chunk.choices.length ? chunk.choices[0].delta.content || "" : "";
        if (text.length > 0) controller.abort();
      }
    } catch (err) {
      raised = err.constructor.name; // the SDK may end the loop quietly instead
    }
    return { text, id, aborted: controller.signal.aborted, raised, session };
  },
};

scenarios[process.argv[2]]()
  .then((result) => process.stdout.write(JSON.stringify(result)))
  .catch((err) => {
    process.stderr.write(String(err && err.stack ? err.stack : err));
    process.exit(1);
  });
