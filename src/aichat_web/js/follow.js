// Keeping the newest text in view while an answer streams, unless the reader scrolled up
// to read: then a "Jump to latest" button appears instead, and takes them back down.

export class Follower {
  constructor(list, button) {
    this.list = list;
    this.button = button;
    this.pinned = true;
    // `pinned` is measured when the reader scrolls, not after the content grew.
    list.addEventListener("scroll", () => {
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

  follow(force = false) {
    if (force) this.pinned = true;
    if (this.pinned) {
      this.list.scrollTop = this.list.scrollHeight;
      this.button.hidden = true;
    } else if (this.distance() > 80) {
      this.button.hidden = false;
    }
  }
}
