// Words and numbers of the live page, and the two element makers.

const SVG_NS = 'http://www.w3.org/2000/svg';

// === words and numbers ===

const refusals = (c) => c.rejected.reduce((sum, [, n]) => sum + n, 0);
const tag = (v) => (typeof v === 'string' ? v : Object.keys(v)[0]);
const words = (v) => tag(v).replace(/_/g, ' ');
const pct = (x) => (x * 100).toFixed(1) + '%';
const pctTop = (x) => (x * 100).toFixed(x < 0.1 ? 1 : 0) + '%';
const ms = (x) => (x == null ? '–' : x < 10 ? x.toFixed(1) : x.toFixed(0));
const num = (x) => (x < 10 ? x.toFixed(1) : x.toFixed(0));
const clock = (atMs) => new Date(state.offsetMs + atMs).toLocaleTimeString([], { hour12: false });

function measureText(m) {
  const who = m.component;
  const what = tag(m.what);
  let text;
  if (what === 'trip_breaker') text = `tripped ${who}'s breaker`;
  else if (what === 'throttle') text = `throttled calls to ${who} (k = ${m.what.throttle.k})`;
  else if (what === 'stop_throttling') text = `stopped throttling calls to ${who}`;
  else text = `${m.what.custom} (${who})`;
  const why = tag(m.why);
  const reason = m.why[why];
  if (why === 'blackout' || why === 'brownout') {
    text += `: ${why} of episode ${reason.episode} (${pct(reason.error_rate)} own errors)`;
  } else if (why === 'episode_closed') {
    text += `: episode ${reason.episode} closed`;
  } else if (why === 'custom') {
    text += `: ${reason}`;
  }
  const until = tag(m.until);
  if (until === 'probes_succeed') text += ', until its probes succeed';
  else if (until === 'episode_closes') text += `, until episode ${m.until.episode_closes.episode} closes`;
  return text;
}

function evidenceText(root) {
  const e = root.evidence;
  if (!e) return words(root.kind);
  if (e.error_rate) {
    const r = e.error_rate;
    return `own error rate ${pct(r.observed)} (${r.failed} of ${r.requests}), baseline ${(r.baseline * 100).toFixed(2)}%`;
  }
  const l = e.latency;
  return `own work p${l.percentile} ${ms(l.observed_ms)} ms, baseline ${ms(l.baseline_ms)} ms`;
}

function kindText(kind) {
  const name = tag(kind);
  if (name === 'custom') return 'custom: ' + kind.custom;
  if (name === 'new_call_pattern' || name === 'slow_call_pattern') {
    return words(name) + ' ' + kind[name].chain.join(' → ');
  }
  return words(name);
}

// === drawing ===

function el(name, attrs, text) {
  const node = document.createElement(name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function svg(name, attrs, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function setStatus(status) {
  const node = document.getElementById('status');
  node.dataset.status = status;
  node.textContent = status;
}
