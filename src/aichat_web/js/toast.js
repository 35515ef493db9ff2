// Toasts instead of alert boxes: errors carry the server's own message and reason.

const LIFETIME_MS = { info: 4000, error: 9000 };

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  item.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => item.remove());
  item.append(close);
  box.append(item);
  setTimeout(() => item.remove(), LIFETIME_MS[kind] ?? LIFETIME_MS.info);
}

// An ApiError (or anything thrown) as one line a user can act on.
export function toastError(error, context) {
  const text = error?.message || String(error);
  const reason = error?.reason ? ` (${error.reason})` : "";
  toast(context ? `${context}: ${text}${reason}` : `${text}${reason}`, "error");
}
