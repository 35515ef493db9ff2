// Keeping the newest text in view while an answer streams, unless the reader scrolled up
// to read: then a "Jump to latest" button appears instead, and takes them back down.

export class Follower {
  constructor(list, button) {
    this.list = list;
    this.button = button;
    this.pinned = true;
    // `pinned` is what the reader did: a scroll to where follow() put the view is ours
    // (its event may come after more content arrived), any other is theirs.
    this.placed = -1;
    list.addEventListener("scroll", () => {
      if (Math.abs(this.list.scrollTop - this.placed) < 2) return;
      this.pinned = this.distance() < 80;
      if (this.pinned) this.button.hidden = true;
    });
    list.addEventListener("answer-grew", () => this.follow());
    button.addEventListener("click", () => {
      this.follow(true);
      document.getElementById("message-input").focus();
    });
  }

  distance() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight;
  }

  // The same, in the next frame: for a caller in the middle of changing the page (sending
  // a message adds a bubble and an answer), where reading the height now would lay the
  // page out once for this and again for the frame.
  followSoon(force = false) {
    if (force) this.pinned = true;
    if (this.soon) return;
    this.soon = true;
    requestAnimationFrame(() => {
      this.soon = false;
      this.follow();
    });
  }

  follow(force = false) {
    if (force) this.pinned = true;
    if (this.pinned) {
      this.list.scrollTop = this.list.scrollHeight;
      this.placed = this.list.scrollTop;
      this.button.hidden = true;
    } else if (this.distance() > 80) {
      this.button.hidden = false;
    }
  }
}
