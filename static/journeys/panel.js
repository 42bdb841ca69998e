// Journey statistics: the entries/conversions chart, redrawn with the numbers each poll of the
// journey-stats partial brings (its canvas stays outside it). No inline scripts: the CSP allows
// only files from 'self'.
let journeyChart = null;

// "07.12." in German, "12/07" in English: the day in the page's language (ISO dates from the server).
function dayLabels(series) {
  if (!series.days) return series.labels;
  const format = new Intl.DateTimeFormat(document.documentElement.lang, { day: "2-digit", month: "2-digit" });
  return series.days.map((day) => format.format(new Date(`${day}T00:00:00`)));
}

function drawJourneyChart() {
  const data = document.getElementById("journey-chart-data");
  const canvas = document.getElementById("journey-chart");
  if (!data || !canvas || !window.Chart) return;
  const series = JSON.parse(data.textContent);
  if (journeyChart) {
    journeyChart.data.labels = dayLabels(series);
    journeyChart.data.datasets[0].data = series.entered;
    journeyChart.data.datasets[1].data = series.converted;
    journeyChart.update("none");
    return;
  }
  journeyChart = new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: dayLabels(series),
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
