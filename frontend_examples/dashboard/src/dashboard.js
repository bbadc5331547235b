// The live dashboard: one liveStats subscription over graphql-ws, drawn with uPlot.
import { createClient } from "graphql-ws";
import uPlot from "uplot";

const KEY_STORAGE = "searchstats.apiKey";
const INTERVAL_MS = 1000;
const RANGES = {
  hours: { days: 1, granularity: "HOUR", label: "Yesterday and today, by hour" },
  days: { days: 29, granularity: "DAY", label: "Last 30 days, by day" },
};

const LIVE_STATS = `
subscription LiveDashboard($from: String!, $to: String!, $timezone: String!,
                           $granularity: Granularity!, $intervalMs: Int!) {
  liveStats(from: $from, to: $to, timezone: $timezone, granularity: $granularity,
            intervalMs: $intervalMs) {
    searches { totalCount points { timestamp count } }
    clicks { totalCount points { timestamp count } }
    visits { totalCount }
    views { totalCount }
    clickThroughRate { overall points { value } }
    averageClickPosition { overall points { value } }
    topQueries(limit: 10) { query count }
  }
}`;

const $ = (id) => document.getElementById(id);
const timezone = Intl.DateTimeFormat().resolvedOptions().timeZone || "Etc/UTC";

let client = null;
let unsubscribe = null;
let charts = null;
let currentDay = null;

function localDate(date) {
  // YYYY-MM-DD of the date in the browser's zone (the zone the stats are bucketed in).
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function period(rangeName) {
  const range = RANGES[rangeName];
  const today = new Date();
  const first = new Date(today);
  first.setDate(today.getDate() - range.days);
  return { from: localDate(first), to: localDate(today), granularity: range.granularity };
}

function setStatus(text, state) {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = state;
}

function showKeyForm(message) {
  $("key-form").hidden = false;
  $("dashboard").hidden = true;
  $("key-error").textContent = message || "";
}

function formatCount(n) {
  return n.toLocaleString();
}

function formatRate(value, digits, percent) {
  if (value === null || value === undefined) return "—";
  return percent ? `${(value * 100).toFixed(digits)} %` : value.toFixed(digits);
}

function chartWidth() {
  return Math.max(320, $("charts").clientWidth - 8);
}

function makeCharts(xs) {
  const common = { width: chartWidth(), height: 240, legend: { live: false } };
  const volume = new uPlot(
    {
      ...common,
      title: "Searches and clicks",
      series: [
        {},
        { label: "Searches", stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,0.08)" },
        { label: "Clicks", stroke: "#dc2626", width: 2 },
      ],
      axes: [{}, { label: "events" }],
    },
    [xs, xs.map(() => 0), xs.map(() => 0)],
    $("volume-chart"),
  );
  const rates = new uPlot(
    {
      ...common,
      title: "Click-through rate and average click position",
      scales: { pct: { range: [0, 100] }, pos: {} },
      series: [
        {},
        { label: "CTR %", stroke: "#059669", width: 2, scale: "pct", spanGaps: true },
        { label: "Avg. position", stroke: "#9333ea", width: 2, scale: "pos", spanGaps: true },
      ],
      axes: [{}, { scale: "pct", label: "CTR %" }, { scale: "pos", side: 1, label: "position" }],
    },
    [xs, xs.map(() => null), xs.map(() => null)],
    $("rates-chart"),
  );
  return { volume, rates };
}

function render(stats) {
  $("searches-total").textContent = formatCount(stats.searches.totalCount);
  $("clicks-total").textContent = formatCount(stats.clicks.totalCount);
  $("visits-total").textContent = formatCount(stats.visits.totalCount);
  $("views-total").textContent = formatCount(stats.views.totalCount);
  $("ctr").textContent = formatRate(stats.clickThroughRate.overall, 1, true);
  $("avg-position").textContent = formatRate(stats.averageClickPosition.overall, 2, false);

  const xs = stats.searches.points.map((p) => p.timestamp / 1000);
  const volume = [xs, stats.searches.points.map((p) => p.count), stats.clicks.points.map((p) => p.count)];
  const ctr = stats.clickThroughRate.points.map((p) => (p.value === null ? null : p.value * 100));
  const rates = [xs, ctr, stats.averageClickPosition.points.map((p) => p.value)];
  if (!charts || charts.volume.data[0].length !== xs.length) {
    if (charts) {
      charts.volume.destroy();
      charts.rates.destroy();
    }
    charts = makeCharts(xs);
  }
  charts.volume.setData(volume);
  charts.rates.setData(rates);

  const rows = stats.topQueries.map((row) => {
    const tr = document.createElement("tr");
    const query = document.createElement("td");
    const count = document.createElement("td");
    query.textContent = row.query;
    count.textContent = formatCount(row.count);
    tr.append(query, count);
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 2;
    td.className = "empty";
    td.textContent = "No searches in this period yet.";
    tr.append(td);
    rows.push(tr);
  }
  $("top-queries").replaceChildren(...rows);
  $("updated").textContent = new Date().toLocaleTimeString();
}

function subscribe() {
  if (unsubscribe) unsubscribe();
  const rangeName = $("range").value;
  const { from, to, granularity } = period(rangeName);
  currentDay = localDate(new Date());
  $("period").textContent = `${from} to ${to} (${timezone})`;
  unsubscribe = client.subscribe(
    {
      query: LIVE_STATS,
      variables: { from, to, timezone, granularity, intervalMs: INTERVAL_MS },
    },
    {
      next: (result) => {
        if (result.errors) {
          setStatus(result.errors.map((e) => e.message).join("; "), "error");
          return;
        }
        setStatus("live", "live");
        render(result.data.liveStats);
      },
      error: (error) => {
        if (Array.isArray(error)) {
          setStatus(error.map((e) => e.message).join("; "), "error");
        }
      },
      complete: () => {},
    },
  );
}

function connect(key) {
  $("key-form").hidden = true;
  $("dashboard").hidden = false;
  setStatus("connecting…", "connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  client = createClient({
    url: `${scheme}://${location.host}/graphql`,
    // Credentials travel in connection_init, never in the URL.
    connectionParams: { Authorization: `Token ${key}` },
    retryAttempts: Infinity,
    shouldRetry: (event) => !(event && event.code === 4403),
    on: {
      connected: () => setStatus("live", "live"),
      closed: (event) => {
        if (event && event.code === 4403) {
          disconnect();
          showKeyForm("This API key was refused.");
        } else {
          setStatus("reconnecting…", "connecting");
        }
      },
    },
  });
  subscribe();
}

function disconnect() {
  if (unsubscribe) unsubscribe();
  unsubscribe = null;
  if (client) client.dispose();
  client = null;
}

function start() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    localStorage.setItem(KEY_STORAGE, key);
    connect(key);
  });
  $("forget-key").addEventListener("click", () => {
    disconnect();
    localStorage.removeItem(KEY_STORAGE);
    $("api-key").value = "";
    showKeyForm("");
  });
  $("range").addEventListener("change", () => client && subscribe());
  window.addEventListener("resize", () => {
    if (!charts) return;
    charts.volume.setSize({ width: chartWidth(), height: 240 });
    charts.rates.setSize({ width: chartWidth(), height: 240 });
  });
  // The period is whole local days: move it on when the day changes.
  setInterval(() => {
    if (client && currentDay !== localDate(new Date())) subscribe();
  }, 60_000);

  const saved = localStorage.getItem(KEY_STORAGE);
  if (saved) connect(saved);
  else showKeyForm("");
}

start();
