// Campaign composer and preflight: show the inputs of the chosen audience and schedule, switch the
// preview between the three recipients, mark the inputs the live preview found a problem with. The
// server does every check (htmx posts the form on each change); without JavaScript every section
// and every recipient's phone shows, and the "Preview" button re-renders the page. No inline scripts (CSP).
(() => {
  const form = document.querySelector("[data-composer]");
  let currentTab = "1"; // the recipient shown stays shown when the preview is redrawn

  function showPreview(root, index) {
    if (!root) return;
    if (!root.querySelector(`[data-preview="${index}"]`)) index = "1";
    currentTab = index;
    root.querySelectorAll("[data-preview]").forEach((el) => { el.hidden = el.dataset.preview !== index; });
    root.querySelectorAll("[data-preview-tab]").forEach((tab) => {
      const active = tab.dataset.previewTab === index;
      tab.classList.toggle("active", active);
      tab.setAttribute("aria-selected", active ? "true" : "false");
    });
  }

  function previewRoot() {
    return document.querySelector("[data-testid=previews]");
  }

  document.addEventListener("click", (event) => {
    const tab = event.target.closest("[data-preview-tab]");
    if (tab) showPreview(previewRoot(), tab.dataset.previewTab);
  });
  showPreview(previewRoot(), currentTab);
  document.querySelectorAll("[data-no-js-only]").forEach((el) => { el.hidden = true; });
  if (!form) return;

  function controlValue(name) {
    const control = form.elements.namedItem(name);
    return control ? control.value : "";
  }

  // Hidden sections are disabled too, so neither the preview nor the save sends them.
  function syncSections() {
    form.querySelectorAll("[data-show-for]").forEach((el) => {
      const [name, values] = el.dataset.showFor.split(":");
      const visible = values.split("|").includes(controlValue(name));
      el.hidden = !visible;
      el.disabled = !visible;
    });
  }

  function syncLive() {
    const live = document.getElementById("composer-live");
    if (!live) return;
    showPreview(previewRoot(), currentTab);
    const problems = new Set((live.dataset.problemFields || "").split(" ").filter(Boolean));
    form.querySelectorAll("input[name], select[name], textarea[name]").forEach((input) => {
      if (input.type === "hidden" || input.type === "radio" || input.type === "checkbox") return;
      input.classList.toggle("is-invalid", problems.has(input.name));
    });
  }

  form.addEventListener("change", syncSections);
  document.body.addEventListener("htmx:afterSettle", () => { syncSections(); syncLive(); });
  syncSections();
  syncLive();
})();
