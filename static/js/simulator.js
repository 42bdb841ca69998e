// Phone simulator: keep the chat at the newest message (or where the reader scrolled to),
// show error answers, clear the message box after sending.
(() => {
  let follow = true;
  let kept = 0;
  const thread = () => document.getElementById("chat-thread");

  const restore = () => {
    const el = thread();
    if (!el) return;
    el.scrollTop = follow ? el.scrollHeight : kept;
  };

  document.addEventListener("DOMContentLoaded", restore);
  document.addEventListener("scroll", (event) => {
    const el = event.target;
    if (el.id === "chat-thread") follow = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }, true);
  document.addEventListener("htmx:beforeSwap", (event) => {
    const el = thread();
    if (el) kept = el.scrollTop;
    // A 400 answer carries the thread with the error in it: show it.
    if (event.detail.xhr.status === 400 && event.detail.target.id === "chat-thread") {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSwap", restore);
  document.addEventListener("htmx:afterRequest", (event) => {
    const form = event.target.closest && event.target.closest("[data-sim-composer]");
    if (form && event.detail.successful) {
      form.reset();
      follow = true;
      restore();
      form.querySelector("input[name=text]").focus();
    }
  });
})();
