// The live page of a reflex witness, its state and its stream: it reads
// the server-sent events at `events` (beside the page): `hello`, then
// `snapshot`s and `report`s; it keeps a window of points per component for
// the charts, the calls seen between components for the graph, and the
// reports for the timeline. (The page's three scripts run in one function:
// text.js, draw.js, then this one.)

const windowMs = Number(document.body.dataset.windowMs) || 300000;
const base = location.pathname.endsWith('/') ? location.pathname : location.pathname + '/';

const state = {
  cycle: 0, // the newest cycle taken
  latest: null, // the newest snapshot
  offsetMs: 0, // wall clock minus the witness's clock
  intervalMs: 1000, // the witness's interval, as `hello` says (a second until it does)
  reportsShown: 64, // how many reports to keep, as `hello` says: the newest
  names: [], // components, in the order first seen
  order: [], // components, in the graph's order: column by column
  series: new Map(), // component -> [{ t, rate, errors, p50, p99 }]
  edges: new Map(), // caller \0 callee -> { caller, callee, calls, failed, t }
  reports: new Map(), // key -> report
  cards: new Map(), // component -> its card's elements
};

// === the stream ===

function connect() {
  const source = new EventSource(base + 'events');
  source.onopen = () => setStatus('live');
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (too many streams, or gone): try again later.
      setStatus('closed');
      setTimeout(connect, 5000);
    } else {
      setStatus('reconnecting');
    }
  };
  source.addEventListener('hello', (e) => onHello(JSON.parse(e.data)));
  source.addEventListener('snapshot', (e) => onSnapshot(JSON.parse(e.data)));
  source.addEventListener('report', (e) => onReport(JSON.parse(e.data)));
}

function onHello(hello) {
  if (hello.interval_ms > 0) state.intervalMs = hello.interval_ms;
  if (hello.reports_shown > 0) state.reportsShown = hello.reports_shown;
  // A witness whose newest cycle is older than ours is another one (the
  // process restarted): start again.
  if (hello.cycle < state.cycle) {
    state.cycle = 0;
    state.latest = null;
    state.series.clear();
    state.edges.clear();
    state.reports.clear();
  }
}

function onSnapshot(snapshot) {
  if (snapshot.cycle <= state.cycle) return;
  const t = snapshot.observed_at_ms;
  state.cycle = snapshot.cycle;
  state.latest = snapshot;
  state.offsetMs = Date.now() - t;
  for (const c of snapshot.components) {
    if (!state.series.has(c.component)) {
      state.series.set(c.component, []);
      state.names.push(c.component);
    }
    const points = state.series.get(c.component);
    points.push({
      t,
      rate: c.throughput,
      errors: c.error_rate,
      refused: c.requests > 0 ? Math.min(1, refusals(c) / c.requests) : 0,
      p50: c.p50_ms,
      p99: c.p99_ms,
    });
    while (points.length > 0 && points[0].t < t - windowMs) points.shift();
  }
  for (const call of snapshot.calls) {
    state.edges.set(call.caller + '\u0000' + call.callee, { ...call, t });
    for (const name of [call.caller, call.callee]) {
      if (!state.names.includes(name)) state.names.push(name);
    }
  }
  schedule();
}

function onReport(report) {
  state.reports.set(report.cycle + '|' + report.at_ms + '|' + report.summary, report);
  // The newest `reportsShown` only.
  const extra = state.reports.size - state.reportsShown;
  if (extra > 0) {
    const oldest = [...state.reports.entries()].sort(([, a], [, b]) => a.at_ms - b.at_ms || a.cycle - b.cycle);
    for (const [key] of oldest.slice(0, extra)) state.reports.delete(key);
  }
  schedule();
}

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  setTimeout(() => {
    scheduled = false;
    render();
  }, 50);
}

render();
connect();
// Quiet cycles are not sent: re-render now and then, so that figures
// grow stale when the witness has had nothing to say for a while.
setInterval(schedule, 1000);
