// The live page's drawing: the header, the graph of calls, the component
// cards with their charts, the reports' timeline.

function render() {
  const latest = state.latest;
  const cycle = document.querySelector('#cycle b');
  cycle.dataset.cycle = String(state.cycle);
  cycle.textContent = latest ? String(state.cycle) : '–';
  document.getElementById('observed').textContent = latest ? 'at ' + clock(latest.observed_at_ms) : '';
  document.getElementById('window').textContent = Math.round(windowMs / 60000) >= 1
    ? Math.round(windowMs / 60000) + ' min'
    : Math.round(windowMs / 1000) + ' s';
  if (latest) {
    renderGraph(latest);
    renderComponents(latest);
  }
  renderReports();
}

const BOX_W = 200;
const BOX_H = 70;
const GAP_X = 150;
const GAP_Y = 26;
const PAD = 14;

// Each component's column: the longest chain of calls leading to it
// (bounded, so that a cycle of calls cannot loop).
function columns(names, edges) {
  const depth = new Map(names.map((n) => [n, 0]));
  for (let i = 0; i < names.length; i++) {
    let changed = false;
    for (const e of edges) {
      if (e.caller === e.callee) continue;
      const d = depth.get(e.caller) + 1;
      if (d > depth.get(e.callee) && d < names.length) {
        depth.set(e.callee, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}

function renderGraph(latest) {
  const graph = document.getElementById('graph');
  const names = state.names;
  const edges = [...state.edges.values()];
  const byName = new Map(latest.components.map((c) => [c.component, c]));
  document.getElementById('graph-empty').hidden = names.length > 0;
  const depth = columns(names, edges);
  const cols = [];
  for (const name of names) {
    const d = depth.get(name);
    (cols[d] = cols[d] || []).push(name);
  }
  const pos = new Map();
  cols.forEach((col, i) => {
    if (i > 0) {
      // Beside their callers, on average.
      const rank = (n) => {
        const ys = edges.filter((e) => e.callee === n && pos.has(e.caller)).map((e) => pos.get(e.caller).y);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : Infinity;
      };
      col.sort((a, b) => rank(a) - rank(b));
    }
    col.forEach((name, j) => pos.set(name, { x: PAD + i * (BOX_W + GAP_X), y: PAD + j * (BOX_H + GAP_Y) }));
  });
  const width = PAD * 2 + Math.max(1, cols.length) * (BOX_W + GAP_X) - GAP_X;
  const height = PAD * 2 + Math.max(1, ...cols.map((c) => (c || []).length)) * (BOX_H + GAP_Y) - GAP_Y + 16;
  graph.setAttribute('viewBox', `0 0 ${width} ${height}`);
  graph.style.maxWidth = width + 'px';
  graph.replaceChildren();
  const defs = svg('defs');
  for (const [id, cls] of [['arrow', ''], ['arrow-failing', 'failing']]) {
    const marker = svg('marker', { id, class: cls, viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' });
    marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z' }));
    defs.append(marker);
  }
  graph.append(defs);
  const step = state.intervalMs;
  const stale = staleFor(latest);
  for (const e of edges) {
    const a = pos.get(e.caller);
    const b = pos.get(e.callee);
    if (!a || !b) continue;
    const current = e.t === latest.observed_at_ms;
    const failing = current && e.failed > 0;
    const g = svg('g', { class: 'edge' + (failing ? ' failing' : '') + (current ? '' : ' idle'), 'data-caller': e.caller, 'data-callee': e.callee });
    const x1 = a.x + BOX_W;
    const y1 = a.y + BOX_H / 2;
    let x2 = b.x;
    const y2 = b.y + BOX_H / 2;
    let d;
    if (b.x > a.x) {
      const mx = (x1 + x2) / 2;
      d = `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
    } else {
      // A call back to an earlier column: around, below.
      x2 = b.x + BOX_W / 2;
      const low = Math.max(a.y, b.y) + BOX_H + GAP_Y;
      d = `M ${a.x + BOX_W / 2} ${a.y + BOX_H} C ${a.x + BOX_W / 2} ${low}, ${x2} ${low}, ${x2} ${b.y + BOX_H}`;
    }
    g.append(svg('path', { d, 'marker-end': failing ? 'url(#arrow-failing)' : 'url(#arrow)' }));
    const label = current
      ? `${num(e.calls / (step / 1000))}/s` + (e.failed > 0 ? ` · ${pct(e.failed / Math.max(1, e.calls))} fail` : '')
      : 'idle';
    g.append(svg('text', { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 7, 'text-anchor': 'middle' }, label));
    graph.append(g);
  }
  state.order = [...names].sort((a, b) => pos.get(a).x - pos.get(b).x || pos.get(a).y - pos.get(b).y);
  for (const name of names) {
    const p = pos.get(name);
    const c = byName.get(name);
    const breaker = (c && c.breaker) || 'none';
    const g = svg('g', { class: 'node' + (stale != null ? ' stale' : ''), 'data-node': name, 'data-breaker': breaker, transform: `translate(${p.x},${p.y})` });
    g.append(svg('rect', { width: BOX_W, height: BOX_H, rx: 7 }));
    g.append(svg('circle', { class: 'dot', cx: BOX_W - 14, cy: 17, r: 6 }));
    g.append(svg('text', { class: 'name', x: 12, y: 22 }, name));
    g.append(svg('text', { class: 'state', x: BOX_W - 26, y: 21, 'text-anchor': 'end' }, c && c.breaker ? breaker.replace('_', '-') : ''));
    const rates = c ? `${num(c.throughput)} req/s · ${pct(c.error_rate)} errors` : 'not followed';
    g.append(svg('text', { class: 'figures', x: 12, y: 43 }, rates));
    if (c) {
      const flight = c.shed_limit != null ? `${c.in_flight}/${c.shed_limit}` : String(c.in_flight);
      g.append(svg('text', { class: 'figures', x: 12, y: 60 }, `p99 ${ms(c.p99_ms)} ms · in flight ${flight}`));
    }
    graph.append(g);
  }
}

// How long ago the witness's last snapshot was, in ms, when that is over
// two intervals (quiet cycles are not sent: its figures are stale); null
// otherwise.
function staleFor(latest) {
  const age = Date.now() - state.offsetMs - latest.observed_at_ms;
  return age > 2 * state.intervalMs ? age : null;
}

function card(name) {
  let parts = state.cards.get(name);
  if (parts) return parts;
  const root = el('article', { class: 'card', 'data-component': name });
  const head = el('header');
  head.append(el('h3', {}, name));
  const breaker = el('span', { class: 'breaker' });
  head.append(breaker);
  const staleNote = el('span', { class: 'stale-note' });
  const figures = el('dl', { class: 'figures' });
  const figure = (key, label) => {
    const box = el('div');
    box.append(el('dt', {}, label));
    const dd = el('dd', { 'data-figure': key });
    box.append(dd);
    figures.append(box);
    return dd;
  };
  parts = {
    root,
    breaker,
    staleNote,
    rate: figure('rate', 'req/s'),
    errors: figure('errors', 'errors'),
    refused: figure('refused', 'refused'),
    latency: figure('latency', 'p50 / p99 ms'),
    inFlight: figure('in-flight', 'in flight'),
  };
  const charts = el('div', { class: 'charts' });
  // `label`: its words, each in the colour of its line.
  const chart = (key, label) => {
    const fig = el('figure', { 'data-chart': key });
    const caption = el('figcaption');
    const keys = el('span');
    label.forEach(([text, cls], i) => {
      if (i > 0) keys.append(' ');
      keys.append(el('span', { class: 'key ' + cls }, text));
    });
    caption.append(keys);
    const top = el('span', { class: 'top' });
    caption.append(top);
    fig.append(caption);
    const box = svg('svg', { viewBox: '0 0 240 44', preserveAspectRatio: 'none' });
    fig.append(box);
    charts.append(fig);
    return { box, top };
  };
  parts.rateChart = chart('rate', [['requests/s', 'rate']]);
  parts.errorsChart = chart('errors', [['errors', 'errors'], ['refused', 'refused']]);
  parts.latencyChart = chart('latency', [['p50', 'p50'], ['p99 ms', 'p99']]);
  parts.extra = el('p', { class: 'extra' });
  root.append(head, staleNote, figures, charts, parts.extra);
  document.getElementById('components').append(root);
  state.cards.set(name, parts);
  return parts;
}

function renderComponents(latest) {
  const box = document.getElementById('components');
  const byName = new Map(latest.components.map((c) => [c.component, c]));
  const stale = staleFor(latest);
  for (const name of state.order) {
    const c = byName.get(name);
    if (!c) continue;
    box.append(card(name).root); // in the graph's order
    const parts = card(c.component);
    const breaker = c.breaker || 'none';
    parts.root.dataset.breaker = breaker;
    // No snapshot for over two intervals: the figures are the last ones.
    if (stale != null) {
      parts.root.dataset.stale = '';
      parts.staleNote.textContent = `no news for ${Math.round(stale / 1000)} s`;
    } else {
      delete parts.root.dataset.stale;
      parts.staleNote.textContent = '';
    }
    parts.breaker.textContent = c.breaker ? breaker.replace('_', '-') : 'no breaker';
    parts.breaker.dataset.state = breaker;
    parts.rate.textContent = num(c.throughput);
    parts.errors.textContent = pct(c.error_rate);
    parts.refused.textContent = c.requests > 0 ? pct(Math.min(1, refusals(c) / c.requests)) : pct(0);
    parts.latency.textContent = `${ms(c.p50_ms)} / ${ms(c.p99_ms)}`;
    // The shed layer's limit, when the snapshot carries it.
    parts.inFlight.textContent = c.shed_limit != null ? `${c.in_flight} / ${c.shed_limit}` : String(c.in_flight);
    const rejected = c.rejected.map(([kind, n]) => `${kind.replace(/_/g, ' ')} ${n}`).join(', ');
    const ended = c.succeeded + c.failed;
    const own = ended > 0 ? pct(c.own_failed / ended) : pct(0);
    parts.extra.textContent = `own errors ${own} · echoed ${c.propagated_failed} · self p50 ${ms(c.self_p50_ms)} ms · shed ${c.shed} · retries ${c.retries} · coalesced ${c.coalesced} · slot queue ${c.slot_queue_depth}` + (rejected ? ` · refused: ${rejected}` : '');
    const points = state.series.get(c.component) || [];
    const until = latest.observed_at_ms;
    parts.rateChart.top.textContent = num(sparkline(parts.rateChart.box, points, until, [['rate', 'rate']], 1));
    parts.errorsChart.top.textContent = pctTop(sparkline(parts.errorsChart.box, points, until, [['errors', 'errors'], ['refused', 'refused']], 0.05));
    parts.latencyChart.top.textContent = ms(sparkline(parts.latencyChart.box, points, until, [['p50', 'p50'], ['p99', 'p99']], 1));
  }
}

// Lines of `keys` of `points` over the window ending at `until`, from 0
// to the largest value (at least `floor`); broken where a value is
// missing or the witness had nothing to say (a quiet cycle). Returns the
// top of the scale.
function sparkline(box, points, until, keys, floor) {
  const W = 240;
  const H = 44;
  // The window, or less while the page has less.
  const from = Math.max(until - windowMs, points.length > 0 ? points[0].t : until);
  const span = Math.max(1, until - from);
  let top = floor;
  for (const p of points) for (const [k] of keys) if (p[k] != null && p[k] > top) top = p[k];
  const scale = top;
  top *= 1.1;
  const gap = state.intervalMs * 2.5;
  box.replaceChildren();
  for (const [k, cls] of keys) {
    const runs = [];
    let prev = null;
    for (const p of points) {
      if (p[k] == null) {
        prev = null;
        continue;
      }
      if (prev == null || p.t - prev.t > gap) runs.push([]);
      const x = ((p.t - from) / span) * W;
      const y = H - (p[k] / top) * (H - 2) - 1;
      runs[runs.length - 1].push(x.toFixed(1) + ' ' + y.toFixed(1));
      prev = p;
    }
    // A run of one point is drawn as a dot (a round cap on a tiny line).
    const d = runs.map((run) => 'M' + run.join(' L') + (run.length === 1 ? ' l0.1 0' : '')).join(' ');
    if (d) box.append(svg('path', { class: cls, d }));
  }
  return scale;
}

function renderReports() {
  const list = document.getElementById('reports');
  const reports = [...state.reports.values()].sort((a, b) => b.at_ms - a.at_ms || b.cycle - a.cycle);
  document.getElementById('reports-empty').hidden = reports.length > 0;
  list.replaceChildren(
    ...reports.map((r) => {
      const roots = r.roots.map((root) => root.component);
      const item = el('li', { class: 'report', 'data-kind': tag(r.kind), 'data-roots': roots.join(' ') });
      if (r.episode != null) item.dataset.episode = String(r.episode);
      const when = el('div', { class: 'when' });
      when.append(el('time', {}, clock(r.at_ms)), ' ', el('span', { class: 'kind' }, kindText(r.kind)));
      if (r.episode != null) when.append(` · episode ${r.episode}`);
      item.append(when, el('div', { class: 'summary' }, r.summary));
      for (const root of r.roots) {
        const line = el('div', { class: 'detail root' }, 'root: ');
        line.append(el('b', { 'data-root': root.component }, root.component), ' — ' + evidenceText(root));
        item.append(line);
      }
      if (r.affected.length > 0) {
        item.append(el('div', { class: 'detail affected' }, 'affected: ' + r.affected.map((a) => a.path.join(' → ')).join(', ')));
      }
      if (r.actions.length > 0) {
        const actions = el('ul', { class: 'actions' });
        for (const m of r.actions) actions.append(el('li', {}, measureText(m)));
        item.append(actions);
      }
      return item;
    }),
  );
}
