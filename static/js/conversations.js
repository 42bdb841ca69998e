// Conversations: keep the thread scrolled like a chat, pause polling in hidden tabs, Enter sends,
// the template preview follows the typed parameters. No inline scripts (CSP); htmx does the rest.
(() => {
  const NEAR_BOTTOM = 80; // px: closer than this counts as "reading the newest message"

  const scroller = () => document.querySelector("[data-chat-scroll]");
  const atBottom = (el) => el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM;
  const toBottom = () => {
    const el = scroller();
    if (el) el.scrollTop = el.scrollHeight;
  };

  // How to place the scroll position after the next swap: stay at the newest message, keep the
  // same place (new messages below), or keep the distance from the bottom (older ones above).
  let pending = null;

  function remember(target) {
    const el = scroller();
    if (!target) return;
    if (target.id === "conversation-pane" || !el) {
      pending = target.id === "conversation-pane" ? { keep: "newest" } : pending;
    } else if (target.id === "conversation-older") {
      pending = { keep: "bottom-distance", value: el.scrollHeight - el.scrollTop };
    } else if (target.id === "conversation-thread") {
      pending = atBottom(el) ? { keep: "newest" } : { keep: "top", value: el.scrollTop };
    } else if (target.id === "conversation-composer" && atBottom(el)) {
      pending = { keep: "newest" }; // a taller or shorter composer must not hide the newest message
    }
  }

  function restore() {
    const el = scroller();
    if (!pending || !el) return;
    if (pending.keep === "newest") el.scrollTop = el.scrollHeight;
    else if (pending.keep === "top") el.scrollTop = pending.value;
    else el.scrollTop = el.scrollHeight - pending.value;
    pending = null;
  }

  // "Load older" may bring the same day's separator again; keep the top one only.
  function dedupeDays() {
    const seen = new Set();
    document.querySelectorAll("[data-chat-scroll] .chat-day").forEach((day) => {
      if (seen.has(day.dataset.day)) day.remove();
      else seen.add(day.dataset.day);
    });
  }

  // Grow with the text by rows, not by an inline height: htmx copies attributes between swapped
  // elements, and a style attribute would trip the CSP.
  function autogrow(area) {
    area.rows = 1;
    while (area.rows < 8 && area.scrollHeight > area.clientHeight) area.rows += 1;
  }

  // The open conversation's row stays highlighted whatever replaced the list (search, poll, more).
  function syncSelected() {
    const selected = document.getElementById("conversation-selected")?.value;
    document.querySelectorAll(".chat-row-link").forEach((row) => {
      const active = Boolean(selected) && row.dataset.subscriber === selected;
      row.classList.toggle("active", active);
      if (active) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    });
  }

  function init(root) {
    syncSelected();
    root.querySelectorAll("[data-no-js-only]").forEach((el) => { el.hidden = true; });
    root.querySelectorAll("textarea[data-autogrow]").forEach(autogrow);
    const focus = root.querySelector && root.querySelector("#reply-text[autofocus]");
    if (focus && document.activeElement !== focus) {
      focus.focus();
      focus.setSelectionRange(focus.value.length, focus.value.length);
    }
  }

  function markSelected(link) {
    document.querySelectorAll(".chat-row-link.active").forEach((row) => {
      row.classList.remove("active");
      row.removeAttribute("aria-current");
    });
    link.classList.add("active");
    link.setAttribute("aria-current", "true");
    document.querySelector("[data-chat-layout]")?.classList.add("has-selection");
  }

  document.addEventListener("DOMContentLoaded", () => {
    init(document);
    toBottom();
  });

  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.shouldSwap) remember(event.detail.target); // not for a poll's 204
  });
  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const target = event.detail.target;
    // A poll brings a new composer when the window opens or closes; never throw away typing.
    if (target && target.id === "conversation-composer") {
      const typed = [...target.querySelectorAll("textarea, input:not([type=hidden])")].some((el) => el.value.trim());
      const chosen = target.querySelector("select[name=template]")?.value;
      if (typed || chosen) event.preventDefault();
      return;
    }
    remember(target);
  });
  document.addEventListener("htmx:afterSettle", () => {
    init(document);
    dedupeDays();
    restore();
  });
  // Restored after the whole response settled (not after an out-of-band part): a composer that
  // shrinks in the same response changes the thread's height.

  // Polls wait while the tab is hidden and catch up as soon as it is visible again.
  document.addEventListener("htmx:beforeRequest", (event) => {
    const elt = event.detail.elt;
    if (document.hidden && elt && elt.hasAttribute("data-poll")) event.preventDefault();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden || !window.htmx) return;
    document.querySelectorAll("[data-poll]").forEach((el) => window.htmx.trigger(el, "poll-now"));
  });

  document.addEventListener("click", (event) => {
    const link = event.target.closest(".chat-row-link");
    if (link && !event.metaKey && !event.ctrlKey && !event.shiftKey) markSelected(link);
  });

  document.addEventListener("keydown", (event) => {
    const area = event.target;
    if (!(area instanceof HTMLTextAreaElement) || area.id !== "reply-text") return;
    if (event.key !== "Enter" || event.shiftKey || event.altKey || event.isComposing) return;
    event.preventDefault();
    if (area.value.trim()) area.form.requestSubmit();
  });

  document.addEventListener("input", (event) => {
    const el = event.target;
    if (el instanceof HTMLTextAreaElement && el.hasAttribute("data-autogrow")) autogrow(el);
    if (el.matches && el.matches("[data-template-form] [data-param]")) updatePreview(el.form);
  });

  // The preview shows the template's text with the typed values (or the examples) filled in.
  // The placeholder grammar comes from the server (whatsapp/placeholders.py), never a copy here.
  const grammarScript = document.getElementById("placeholder-grammar");
  const grammar = grammarScript ? JSON.parse(grammarScript.textContent) : null;
  const TOKEN = grammar ? new RegExp(grammar.token, "g") : null;
  const VALID = grammar ? new RegExp(grammar.name) : null;

  function updatePreview(form) {
    if (!TOKEN) return;
    form.querySelectorAll("[data-preview-source]").forEach((node) => {
      const key = node.dataset.previewSource;
      node.textContent = node.dataset.previewText.replace(TOKEN, (whole, raw) => {
        const name = raw.trim();
        if (!VALID.test(name)) return whole;
        const input = form.querySelector(`[data-param="${key}.${name}"]`);
        if (!input) return whole;
        return input.value.trim() || input.placeholder || whole;
      });
    });
  }
})();
