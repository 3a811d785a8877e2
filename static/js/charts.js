// Dashboard charts. Data comes from <script type="application/json" id="..."> blocks named by a
// canvas's data-chart-source (CSP: no inline scripts). When htmx swaps a new data block in, the
// existing chart gets the new data and redraws without animation: the canvas is never re-created.
(function () {
  "use strict";
  if (window.portalCharts) {
    window.portalCharts.scan();
    return;
  }
  var charts = {};
  var COLORS = ["#1f5fae", "#1e8e3e", "#b26a00", "#c5221f"];

  function readData(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart-source"));
    if (!source) { return null; }
    try { return { text: source.textContent, data: JSON.parse(source.textContent) }; } catch (e) { return null; }
  }

  function datasets(data) {
    return data.datasets.map(function (ds, i) {
      return {
        label: ds.label, data: ds.data, borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length], borderWidth: 2, pointRadius: 2, tension: 0,
        spanGaps: true
      };
    });
  }

  function create(canvas, data) {
    return new window.Chart(canvas, {
      type: "line",
      data: { labels: data.labels, datasets: datasets(data) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        scales: { y: { min: 0, max: 100, ticks: { callback: function (v) { return v + "%"; } } } },
        plugins: { legend: { position: "bottom" } }
      }
    });
  }

  function update(chart, data) {
    chart.data.labels = data.labels;
    data.datasets.forEach(function (ds, i) {
      if (chart.data.datasets[i]) {
        chart.data.datasets[i].data = ds.data;
        chart.data.datasets[i].label = ds.label;
      } else {
        chart.data.datasets.push(datasets(data)[i]);
      }
    });
    chart.update("none");
  }

  function scan() {
    if (!window.Chart) { setTimeout(scan, 50); return; }
    var canvases = document.querySelectorAll("canvas[data-chart-source]");
    Array.prototype.forEach.call(canvases, function (canvas) {
      var found = readData(canvas);
      if (!found) { return; }
      var entry = charts[canvas.id];
      if (entry && entry.chart.canvas === canvas) {
        if (entry.text !== found.text) {
          update(entry.chart, found.data);
          entry.text = found.text;
        }
        return;
      }
      if (entry) { entry.chart.destroy(); }
      charts[canvas.id] = { chart: create(canvas, found.data), text: found.text };
    });
  }

  document.addEventListener("htmx:oobAfterSwap", scan);
  document.addEventListener("htmx:afterSettle", scan);
  window.portalCharts = { scan: scan, charts: charts };
  scan();
})();
