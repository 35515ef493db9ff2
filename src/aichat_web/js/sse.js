// Reading a Server-Sent Events response body (`data: {json}` + blank line per event) as
// it arrives. fetch + ReadableStream instead of EventSource: POST with a JSON body
// (attachments), the token in a header rather than the URL, and an AbortController to hang up.

export async function* sseEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line.startsWith("data:")) {
          data.push(line.slice(5).trimStart());
        } else if (line === "" && data.length) {
          const text = data.join("\n");
          data = [];
          yield JSON.parse(text);
        }
      }
    }
    if (data.length) yield JSON.parse(data.join("\n"));
  } finally {
    reader.releaseLock();
  }
}
