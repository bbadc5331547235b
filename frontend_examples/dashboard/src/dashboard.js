// The live dashboard: one liveStats subscription over graphql-ws, drawn with uPlot.
import { createClient } from "graphql-ws";
import uPlot from "uplot";

const KEY_STORAGE = "searchstats.apiKey";
const INTERVAL_MS = 1000;
// After a subscription ends (unavailable, timeout, too_many_requests…): subscribe again after
// 1, 2, 4… seconds, at most this long, with a little jitter so that tabs do not come back together.
const MAX_RETRY_MS = 30_000;
const FORBIDDEN = 4403; // the key was refused: retrying would not help
// A socket whose other end is gone without a word (a network that changed, a proxy that
// dropped the flow) never closes by itself: ping the service every PING_MS, and drop the
// socket when no pong comes within PONG_MS (graphql-ws then connects again).
const PING_MS = 10_000;
const PONG_MS = 5_000;
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
let subscription = null; // the current one: { dispose, error }
let retryTimer = null;
let failures = 0; // subscriptions that ended in a row, for the backoff
let charts = null;
let currentDay = null;
let pongTimer = null;

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

function describe(error) {
  // GraphQL errors (an array), a CloseEvent of the socket, or an Error.
  if (Array.isArray(error)) return error.map((e) => e.message).join("; ");
  if (error && typeof error.code === "number") {
    return `connection closed (${error.code}${error.reason ? `: ${error.reason}` : ""})`;
  }
  return (error && error.message) || String(error);
}

function subscribe() {
  unsubscribe();
  const rangeName = $("range").value;
  const { from, to, granularity } = period(rangeName);
  currentDay = localDate(new Date());
  $("period").textContent = `${from} to ${to} (${timezone})`;
  // The server ends a subscription on an error (the database unavailable, a computation past
  // its deadline, a tab too slow to read): each end is shown, then the view subscribes again.
  const current = { dispose: null, error: null };
  const mine = (handler) => (value) => subscription === current && handler(value);
  subscription = current;
  current.dispose = client.subscribe(
    {
      query: LIVE_STATS,
      variables: { from, to, timezone, granularity, intervalMs: INTERVAL_MS },
    },
    {
      next: mine((result) => {
        if (result.errors) {
          current.error = describe(result.errors); // the end (complete) follows
          setStatus(current.error, "error");
          return;
        }
        failures = 0;
        setStatus("live", "live");
        render(result.data.liveStats);
      }),
      error: mine((error) => ended(describe(error))),
      complete: mine(() => ended(current.error || "The live view ended")),
    },
  );
}

function backoff(failuresInARow) {
  return Math.min(MAX_RETRY_MS, 1000 * 2 ** failuresInARow) + Math.random() * 500;
}

function ended(reason) {
  subscription = null;
  const delay = backoff(failures);
  failures += 1;
  setStatus(`${reason} — retrying in ${Math.round(delay / 1000)} s`, "error");
  retryTimer = setTimeout(() => {
    retryTimer = null;
    setStatus("reconnecting…", "connecting");
    subscribe();
  }, delay);
}

function unsubscribe() {
  clearTimeout(retryTimer);
  retryTimer = null;
  const previous = subscription;
  subscription = null; // its complete, which disposing calls, is not an end to retry
  if (previous) previous.dispose();
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
    // graphql-ws's own wait is 2^n seconds before the n-th try, without a bound: after an hour
    // without the service (or the network), the page would wait for days before the next one.
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, backoff(retries))),
    shouldRetry: (event) => !(event && event.code === FORBIDDEN),
    keepAlive: PING_MS,
    on: {
      ping: (received) => {
        if (!received) {
          clearTimeout(pongTimer);
          pongTimer = setTimeout(() => client && client.terminate(), PONG_MS);
        }
      },
      pong: (received) => received && clearTimeout(pongTimer),
      closed: (event) => {
        clearTimeout(pongTimer);
        if (event && event.code === FORBIDDEN) {
          disconnect();
          showKeyForm("This API key was refused.");
        } else if (subscription) {
          // The socket went while the subscription was on: the client connects again.
          setStatus("reconnecting…", "connecting");
        } // else the subscription had ended and the socket closed with it: its error stays
      },
    },
  });
  subscribe();
}

function disconnect() {
  unsubscribe();
  failures = 0;
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
