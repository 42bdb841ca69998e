// Journey statistics: the entries/conversions chart, redrawn with the numbers each poll of the
// journey-stats partial brings (its canvas stays outside it). No inline scripts: the CSP allows
// only files from 'self'.
let journeyChart = null;

function drawJourneyChart() {
  const data = document.getElementById("journey-chart-data");
  const canvas = document.getElementById("journey-chart");
  if (!data || !canvas || !window.Chart) return;
  const series = JSON.parse(data.textContent);
  if (journeyChart) {
    journeyChart.data.labels = series.labels;
    journeyChart.data.datasets[0].data = series.entered;
    journeyChart.data.datasets[1].data = series.converted;
    journeyChart.update("none");
    return;
  }
  journeyChart = new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: series.labels,
      datasets: [
        { label: gettext("Entries"), data: series.entered, backgroundColor: "#25d366" },
        { label: gettext("Conversions"), data: series.converted, backgroundColor: "#066fd1" },
      ],
    },
    options: {
      locale: document.documentElement.lang,
      animation: false,
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
}

document.addEventListener("DOMContentLoaded", drawJourneyChart);
document.addEventListener("htmx:afterSwap", drawJourneyChart);
