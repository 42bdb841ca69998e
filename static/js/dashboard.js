// Draws the dashboard chart from the JSON that the page embeds with json_script.
document.addEventListener("DOMContentLoaded", () => {
  const data = document.getElementById("dashboard-chart");
  const canvas = document.getElementById("dashboard-chart-canvas");
  if (!data || !canvas || !window.Chart) return;
  const series = JSON.parse(data.textContent);
  if (!series.length) return;
  // Dates and numbers as the page's language writes them (<html lang>): "25. Nov." / "Nov 25".
  const locale = document.documentElement.lang || undefined;
  new window.Chart(canvas, {
    type: "bar",
    data: {
      // "2026-11-25" -> "Nov 25": short labels stay horizontal.
      labels: series[0].labels.map((d) =>
        new Date(d + "T00:00:00").toLocaleDateString(locale, { month: "short", day: "numeric" })),
      datasets: series.map((s) => ({ label: s.label, data: s.data, backgroundColor: "#25d366" })),
    },
    options: {
      locale,
      maintainAspectRatio: false,
      plugins: { legend: { display: false } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
});
