// Subscriber pages: bulk selection on the list and the per-event chart. No inline scripts (CSP).
(() => {
  // The bulk bar lives inside #subscriber-results, which htmx replaces; handlers are delegated.
  function bulkForm(el) {
    return el.closest("form[data-bulk]");
  }

  function syncBulk(form) {
    if (!form) return;
    const action = form.querySelector("[data-bulk-action]");
    if (action) {
      form.querySelectorAll("[data-bulk-for]").forEach((el) => {
        el.hidden = el.dataset.bulkFor !== action.value;
      });
    }
    const rows = form.querySelectorAll("[data-bulk-row]");
    const checked = form.querySelectorAll("[data-bulk-row]:checked").length;
    const label = form.querySelector("[data-bulk-selected]");
    const all = form.querySelector("[data-bulk-all-matching]");
    if (label) {
      const count = new Intl.NumberFormat(document.documentElement.lang).format(checked);
      label.textContent = checked
        ? interpolate(ngettext("%(count)s selected, or:", "%(count)s selected, or:", checked), { count }, true)
        : gettext("Select rows, or:");
    }
    const toggle = form.querySelector("[data-bulk-toggle]");
    if (toggle) {
      toggle.checked = rows.length > 0 && checked === rows.length;
      toggle.indeterminate = checked > 0 && checked < rows.length;
    }
    if (all && checked && all.checked) all.checked = false;
  }

  document.addEventListener("change", (event) => {
    const form = bulkForm(event.target);
    if (!form) return;
    if (event.target.matches("[data-bulk-toggle]")) {
      form.querySelectorAll("[data-bulk-row]").forEach((box) => {
        box.checked = event.target.checked;
      });
    }
    if (event.target.matches("[data-bulk-all-matching]") && event.target.checked) {
      form.querySelectorAll("[data-bulk-row]").forEach((box) => {
        box.checked = false;
      });
    }
    syncBulk(form);
  });

  function init(root) {
    root.querySelectorAll("form[data-bulk]").forEach(syncBulk);
    const focus = root.querySelector && root.querySelector(".tag-row [autofocus]");
    if (focus) focus.focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    init(document);
    drawEventChart();
  });
  document.addEventListener("htmx:afterSwap", (event) => init(event.detail.elt.parentNode || document));

  function drawEventChart() {
    const data = document.getElementById("event-chart");
    const canvas = document.getElementById("event-chart-canvas");
    if (!data || !canvas || !window.Chart) return;
    const series = JSON.parse(data.textContent);
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: series.labels,
        datasets: [{ label: series.label, data: series.data, backgroundColor: "#25d366" }],
      },
      options: {
        locale: document.documentElement.lang,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  }
})();
