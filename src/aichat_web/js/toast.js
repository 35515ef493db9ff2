// Toasts instead of alert boxes: errors carry the server's own message and reason.
//
// They sit at the top of the conversation, never over the composer or Send; at most
// MAX_SHOWN at once (the oldest gives way), and the same message again refreshes the
// toast already shown (with a count) instead of stacking a copy.

const LIFETIME_MS = { info: 4000, error: 7000 };
const MAX_SHOWN = 2;

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const same = [...box.children].find((t) => t.dataset.message === message);
  if (same) {
    const count = Number(same.dataset.count || "1") + 1;
    same.dataset.count = String(count);
    same.querySelector(".toast-count").textContent = ` (×${count})`;
    arm(same, kind);
    return same;
  }
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.dataset.message = message;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  const text = document.createElement("span");
  text.textContent = message;
  const count = document.createElement("span");
  count.className = "toast-count";
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => item.remove());
  item.append(text, count, close);
  box.append(item);
  while (box.children.length > MAX_SHOWN) box.firstElementChild.remove();
  arm(item, kind);
  return item;
}

function arm(item, kind) {
  clearTimeout(Number(item.dataset.timer || 0));
  item.dataset.timer = String(setTimeout(() => item.remove(), LIFETIME_MS[kind] ?? LIFETIME_MS.info));
}

// An ApiError (or anything thrown) as one line a user can act on. A refused sign-in is
// not a toast: the sign-in card says it (api.js sends the 401s there).
export function toastError(error, context) {
  if (error?.status === 401) return null;
  const text = error?.message || String(error);
  const reason = error?.reason ? ` (${error.reason})` : "";
  return toast(context ? `${context}: ${text}${reason}` : `${text}${reason}`, "error");
}
