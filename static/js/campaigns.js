// Campaign pages: the sends-per-minute chart (redrawn when htmx swaps the live partial), and
// filter forms that submit on change. No inline scripts: the CSP allows only files from 'self'.
let chart = null;

function drawChart() {
  const data = document.getElementById("campaign-chart-data");
  const canvas = document.getElementById("campaign-chart");
  if (!data || !canvas || !window.Chart) return;
  const series = JSON.parse(data.textContent);
  if (chart) {
    chart.data.labels = series.labels;
    chart.data.datasets[0].data = series.data;
    chart.update("none");
    return;
  }
  chart = new window.Chart(canvas, {
    type: "bar",
    data: { labels: series.labels, datasets: [{ label: gettext("Sends"), data: series.data, backgroundColor: "#25d366" }] },
    options: {
      locale: document.documentElement.lang || undefined,
      animation: false,
      maintainAspectRatio: false,
      plugins: { legend: { display: false } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 12 } } },
    },
  });
}

function hideNoJs(root) {
  root.querySelectorAll("[data-no-js-only]").forEach((el) => { el.hidden = true; });
}

document.addEventListener("DOMContentLoaded", () => {
  drawChart();
  hideNoJs(document);
});

// The live partial brings new numbers for the chart, whose canvas stays outside it.
document.addEventListener("htmx:afterSwap", (event) => {
  hideNoJs(event.detail.elt.parentNode || document);
  drawChart();
});

document.addEventListener("change", (event) => {
  const field = event.target.closest("[data-autosubmit]");
  if (field && field.form) field.form.requestSubmit();
});
