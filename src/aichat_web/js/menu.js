// A menu button (WAI-ARIA "menu button" pattern): Enter, Space or ↓ opens it on its first
// item, ↑ on its last; ↑ ↓ Home End move; Enter activates; Escape closes it and gives
// focus back; Tab or a click elsewhere closes it. Arrow keys never act, they only move.

export function menuButton(button, menu, onAction) {
  const items = () => [...menu.querySelectorAll('[role="menuitem"]:not([disabled])')];
  const open = (focus = 0) => {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const list = items();
    list.at(focus)?.focus();
  };
  const close = (refocus = true) => {
    if (menu.hidden) return;
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (refocus) button.focus();
  };
  button.addEventListener("click", () => (menu.hidden ? open() : close()));
  button.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      open(event.key === "ArrowUp" ? -1 : 0);
    }
  });
  menu.addEventListener("keydown", (event) => {
    const list = items();
    const at = list.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: list.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      list.at(moves[event.key] % list.length)?.focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === "Tab") {
      close(false);
    }
  });
  menu.addEventListener("click", (event) => {
    const item = event.target.closest('[role="menuitem"]');
    if (!item || item.disabled) return;
    close();
    onAction(item.dataset.action);
  });
  document.addEventListener("pointerdown", (event) => {
    if (!menu.hidden && !menu.contains(event.target) && !button.contains(event.target)) close(false);
  });
  return { close };
}
