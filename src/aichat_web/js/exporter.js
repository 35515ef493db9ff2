// Export: the server renders the session (ExportSession) as text, Markdown or JSON; the
// page only turns the response into a download.

import { api } from "./api.js";
import { el, sessionId } from "./dom.js";
import { toastError } from "./toast.js";

const FORMATS = {
  txt: "EXPORT_FORMAT_TEXT",
  md: "EXPORT_FORMAT_MARKDOWN",
  json: "EXPORT_FORMAT_JSON",
};

// `choice`: an extension, "-thinking" after it for the models' reasoning too.
export async function exportSession(session, choice) {
  const [extension, thinking] = choice.split("-");
  try {
    const response = await api.exportSession(session.name, FORMATS[extension], thinking === "thinking");
    const blob = await response.blob();
    const disposition = response.headers.get("content-disposition") || "";
    const named = /filename="?([^";]+)"?/.exec(disposition);
    const filename = named ? named[1] : `${sessionId(session.name)}.${extension}`;
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (error) {
    toastError(error, "Export failed");
  }
}
