// The shared board: cursors, shapes with transitions, teams, a slow link and the node's statistics.
// Plain ES module; the client comes from the entanglement-js jar at /js/ (see index.html).
import { EntanglementClient, decodeFrame } from '/js/src/index.js';

const SVG = 'http://www.w3.org/2000/svg';
const BOARD = { width: 1000, height: 600 };
/** What the node sends to a tab with "Slow link" ticked (WebSocketPeers.SLOW_LINK_BYTES_PER_SECOND). */
const SLOW_LINK_BYTES_PER_SECOND = 2000;
const TEAM_COLORS = { red: '#d33', blue: '#36c', staff: '#777' };
const TEAMS = Object.keys(TEAM_COLORS);
/** A cursor not updated for this long is drawn faded (its tab may be gone). */
const CURSOR_IDLE_MS = 30_000;
const RECEIVED_KEPT = 20_000;

// ------------------------------------------------------------------ who this tab is

const params = new URLSearchParams(location.search);
const remembered = (name, fallback) => {
  const v = params.get(name) ?? sessionStorage.getItem(`entanglement-${name}`) ?? fallback();
  sessionStorage.setItem(`entanglement-${name}`, v);
  return v;
};
const randomHex = () => [...crypto.getRandomValues(new Uint8Array(4))].map((b) => b.toString(16).padStart(2, '0')).join('');
const clientId = remembered('client', () => `tab-${randomHex()}`);
let team = remembered('team', () => 'red');
if (!TEAMS.includes(team)) team = 'red';
let name = remembered('name', () => clientId.replace(/^tab-/, '').slice(0, 4));
let slow = params.get('slow') === '1';
const hue = [...clientId].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
const cursorColor = `hsl(${hue} 70% 42%)`;

// ------------------------------------------------------------------ instrumentation

/** Every SYNC and TRANSITION this tab received, as the node sent them (for tests and curiosity). */
window.__received = [];
const counts = { cursorPublishes: 0, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };

/** A WebSocket that counts frames and records what arrives; the client uses it like the global one. */
class CountingWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    this.addEventListener('message', (ev) => {
      if (typeof ev.data === 'string') return;
      counts.framesReceived++;
      counts.bytesReceived += ev.data.byteLength;
      try {
        const m = decodeFrame(ev.data);
        if (m.type === 'SYNC' || m.type === 'TRANSITION') {
          if (window.__received.length >= RECEIVED_KEPT) window.__received.shift();
          window.__received.push({
            type: m.type, objectType: m.objectType, key: m.key, owner: m.owner,
            team: m.attributes?.team ?? null, deleted: Boolean(m.deleted),
          });
        }
      } catch {
        // the client reports malformed frames itself
      }
    });
  }

  send(data) {
    counts.framesSent++;
    counts.bytesSent += data.byteLength ?? data.length ?? 0;
    super.send(data);
  }
}

// ------------------------------------------------------------------ state

/** Shapes by key: the committed value. */
const shapes = new Map();
/** Active transitions by shape key: transition id -> tentative value. */
const tentatives = new Map();
/** Other tabs' cursors by key: {value, committedAt}. */
const cursors = new Map();
/** This tab's own shapes, kept across reconnections (a new client republishes them). */
const myShapes = new Map();
/** Ends of transitions seen, for tests: {key, state}. */
window.__transitionEnds = [];
let client = null;
let drag = null;
let lastOutcome = null;
let nodeInfo = null;
let stats = null;

const $ = (id) => document.getElementById(id);
const board = $('board');

function seededShapes() {
  let seed = [...clientId].reduce((h, c) => (h * 33 + c.charCodeAt(0)) >>> 0, 5381);
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  return [1, 2, 3].map((i) => ({
    id: `${clientId}-${i}`, owner: clientId, team, kind: i === 2 ? 'circle' : 'rect',
    x: Math.round(60 + rnd() * (BOARD.width - 220)), y: Math.round(60 + rnd() * (BOARD.height - 200)),
    w: 110, h: 80, color: TEAM_COLORS[team], locked: false, label: `${name}·${i}`,
  }));
}

// ------------------------------------------------------------------ the client

/** A proposal for one of this tab's shapes: refused when locked; only the position may change. */
function decide(p) {
  if (p.type !== 'Shape') return { reject: 'UNAUTHORIZED', message: 'only shapes can be proposed to' };
  const shape = p.current?.value; // p.current is the snapshot held
  if (p.kind !== 'UPDATE' || !shape) return { reject: 'UNAUTHORIZED', message: 'only the owner creates and deletes its shapes' };
  if (shape.locked) return { reject: 'UNAUTHORIZED', message: `${shape.label ?? p.key} is locked by its owner` };
  return { commit: { ...shape, ...clampPosition(p.proposed, shape) } };
}

function clampPosition(v, shape) {
  const x = Number.isFinite(v.x) ? v.x : shape.x;
  const y = Number.isFinite(v.y) ? v.y : shape.y;
  return {
    x: Math.round(Math.min(Math.max(x, 0), BOARD.width - shape.w)),
    y: Math.round(Math.min(Math.max(y, 0), BOARD.height - shape.h)),
  };
}

function connect() {
  if (client) client.close();
  shapes.clear();
  tentatives.clear();
  cursors.clear();
  const q = new URLSearchParams({ client: clientId, team });
  if (slow) q.set('slow', '1');
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?${q}`;
  const c = new EntanglementClient({
    url,
    nodeId: clientId,
    ownerId: clientId,
    types: { Cursor: { key: (v) => v.id }, Shape: { key: (v) => v.id } },
    decide,
    WebSocket: CountingWebSocket,
  });
  client = c;
  for (const event of ['connecting', 'connected', 'disconnected']) {
    c.on(event, (d) => {
      if (c !== client) return;
      const s = $('connection');
      s.className = `state ${c.state}`;
      s.textContent = event === 'disconnected' && d.retryInMs !== null
        ? `offline, retry in ${d.retryInMs} ms` : event === 'connected' ? `connected to ${d.peer}` : c.state;
      s.title = d.reason ?? '';
      renderSelf();
    });
  }
  c.on('error', (e) => showMessage(`${e.code}: ${e.message}`));
  c.watchAll('Shape', (snap) => {
    if (snap.deleted) shapes.delete(snap.key);
    else shapes.set(snap.key, snap.value);
    if (snap.owner === clientId && !snap.deleted) myShapes.set(snap.key, snap.value);
    render();
  });
  c.watchAll('Cursor', (snap) => {
    if (snap.owner === clientId) return;
    if (snap.deleted) cursors.delete(snap.key);
    else cursors.set(snap.key, { value: snap.value, committedAt: snap.committedAt });
    render();
  });
  c.tentativeAll('Shape', (t) => {
    let active = tentatives.get(t.key);
    if (t.state === 'ACTIVE') {
      if (!active) tentatives.set(t.key, (active = new Map()));
      active.set(t.transitionId, t.value);
    } else {
      active?.delete(t.transitionId);
      if (active?.size === 0) tentatives.delete(t.key);
      window.__transitionEnds.push({ key: t.key, state: t.state, at: Date.now() });
    }
    render();
  });
  c.connect();
  if (myShapes.size === 0) for (const s of seededShapes()) myShapes.set(s.id, s);
  for (const s of myShapes.values()) {
    c.publish('Shape', { ...s, team, color: TEAM_COLORS[team], label: s.label ?? s.id });
  }
  document.body.className = `team-${team}`;
  renderSelf();
}

function publishCursor(x, y) {
  client.publish('Cursor', { id: clientId, owner: clientId, team, x: Math.round(x), y: Math.round(y), color: cursorColor, name });
  counts.cursorPublishes++;
}

// ------------------------------------------------------------------ pointer handling

function boardPoint(ev) {
  const p = board.createSVGPoint();
  p.x = ev.clientX;
  p.y = ev.clientY;
  return p.matrixTransform(board.getScreenCTM().inverse());
}

board.addEventListener('pointerdown', (ev) => {
  const target = ev.target.closest('[data-shape]');
  if (!target) return;
  const key = target.dataset.shape;
  const shape = shapes.get(key);
  if (!shape) return;
  if (ev.target.closest('.lock')) {
    if (myShapes.has(key)) client.publish('Shape', { ...shape, locked: !shape.locked });
    return;
  }
  const p = boardPoint(ev);
  const mine = myShapes.has(key);
  drag = { key, dx: p.x - shape.x, dy: p.y - shape.y, shape, transition: mine ? null : client.beginTransition('Shape', key) };
  board.setPointerCapture(ev.pointerId);
  ev.preventDefault();
  render();
});

board.addEventListener('pointermove', (ev) => {
  const p = boardPoint(ev);
  publishCursor(p.x, p.y);
  if (!drag) return;
  const to = clampPosition({ x: p.x - drag.dx, y: p.y - drag.dy }, drag.shape);
  if (drag.transition) drag.transition.update(to);
  else client.publish('Shape', { ...shapes.get(drag.key), ...to });
});

async function endDrag(cancelled) {
  const d = drag;
  drag = null;
  render();
  if (!d?.transition) return;
  if (cancelled) {
    d.transition.abort();
    return;
  }
  const label = d.shape.label ?? d.key;
  try {
    const outcome = await d.transition.commit();
    lastOutcome = { key: d.key, ...outcome };
    showMessage(outcome.committed ? '' : `${label}: rejected (${outcome.code}) ${outcome.message ?? ''}`);
  } catch (e) {
    lastOutcome = { key: d.key, committed: false, code: e.code, message: e.message };
    showMessage(`${label}: ${e.code ?? 'failed'} ${e.message}`);
  }
}

board.addEventListener('pointerup', () => endDrag(false));
board.addEventListener('pointercancel', () => endDrag(true));

// ------------------------------------------------------------------ drawing

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    drawShapes();
    drawCursors();
  });
}

function el(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent?.appendChild(e);
  return e;
}

function shapeBody(s, g, fill) {
  if (s.kind === 'circle') {
    el('ellipse', { class: 'body', cx: s.x + s.w / 2, cy: s.y + s.h / 2, rx: s.w / 2, ry: s.h / 2, fill }, g);
  } else {
    el('rect', { class: 'body', x: s.x, y: s.y, width: s.w, height: s.h, rx: 6, fill }, g);
  }
}

/** A padlock at (x, y), 18 x 22: closed when locked, open otherwise; owners click it to toggle. */
function drawLock(parent, x, y, locked, mine) {
  const g = el('g', { class: `lock${locked ? ' locked' : ''}`, transform: `translate(${x} ${y})` }, parent);
  el('rect', { x: -3, y: -3, width: 24, height: 28, fill: 'transparent' }, g);
  el('path', { class: 'shackle', d: locked ? 'M4 10 V6 a5 5 0 0 1 10 0 V10' : 'M4 10 V6 a5 5 0 0 1 10 0 V4', fill: 'none' }, g);
  el('rect', { class: 'case', x: 1, y: 10, width: 16, height: 12, rx: 2 }, g);
  if (mine) el('title', {}, g).textContent = locked ? 'locked: click to unlock' : 'unlocked: click to lock';
}

function drawShapes() {
  const layer = $('shapes');
  layer.replaceChildren();
  for (const [key, s] of shapes) {
    const mine = myShapes.has(key);
    const g = el('g', { class: `shape${mine ? ' mine' : ''}${drag?.key === key ? ' dragging' : ''}`, 'data-shape': key, 'data-team': s.team ?? '' }, layer);
    shapeBody(s, g, s.color ?? '#999');
    el('text', { class: 'label', x: s.x + 8, y: s.y + 20 }, g).textContent = s.label ?? key;
    if (mine || s.locked) drawLock(g, s.x + s.w - 24, s.y + 6, Boolean(s.locked), mine);
  }
  // Tentative positions on top, dashed: every tab sees where a shape is being dragged.
  for (const [key, active] of tentatives) {
    const s = shapes.get(key);
    if (!s) continue;
    for (const [id, value] of active) {
      const t = { ...s, ...value };
      const g = el('g', { class: 'ghost', 'data-tentative': key, 'data-transition': id }, layer);
      shapeBody(t, g, 'none');
      g.querySelector('.body').setAttribute('stroke', s.color ?? '#999');
      el('text', { class: 'label', x: t.x + 8, y: t.y + 20 }, g).textContent = s.label ?? key;
      el('text', { class: 'label', x: t.x + 8, y: t.y + 36 }, g).textContent = 'tentative';
    }
  }
}

function drawCursors() {
  const layer = $('cursors');
  layer.replaceChildren();
  const now = Date.now();
  for (const [key, { value: c, committedAt }] of cursors) {
    if (!Number.isFinite(c.x) || !Number.isFinite(c.y)) continue;
    const age = Math.max(0, now - committedAt);
    const g = el('g', {
      class: 'cursor', 'data-cursor': key, 'data-x': c.x, 'data-y': c.y, 'data-team': c.team ?? '',
      transform: `translate(${c.x} ${c.y})`, opacity: age > CURSOR_IDLE_MS ? 0.3 : 1,
    }, layer);
    el('path', { d: 'M0 0 L0 18 L5 13 L9 21 L12 20 L8 12 L14 12 Z', fill: c.color ?? '#333', stroke: '#fff', 'stroke-width': 1 }, g);
    el('text', { class: 'name', x: 16, y: 14, fill: c.color ?? '#333' }, g).textContent = `${c.name ?? key} (${c.team ?? '?'})`;
    el('text', { class: 'age', x: 16, y: 28 }, g).textContent = age > CURSOR_IDLE_MS ? 'idle' : `${age} ms old`;
  }
}

function renderSelf() {
  const rows = [
    ['client', clientId],
    ['team', team],
    ['link', slow ? `slow, ${SLOW_LINK_BYTES_PER_SECOND} B/s from the node` : 'unlimited'],
    ['cursor updates', counts.cursorPublishes],
    ['frames sent', `${counts.framesSent} (${counts.bytesSent} B)`],
    ['frames received', `${counts.framesReceived} (${counts.bytesReceived} B)`],
    ['shapes seen', shapes.size],
    ['cursors seen', cursors.size],
  ];
  $('self').replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = String(v);
    return [dt, dd];
  }));
}

function renderStats() {
  const body = $('peers').tBodies[0];
  if (!stats) return;
  $('node-id').textContent = stats.node;
  body.replaceChildren(...stats.peers.map((p) => {
    const tr = document.createElement('tr');
    if (p.peer === `ws:${clientId}`) tr.className = 'me';
    for (const text of [
      p.peer.replace(/^ws:/, ''),
      `${p.stalenessP50Ms.toFixed(0)} / ${p.stalenessP99Ms.toFixed(0)} ms`,
      p.conflationRatio.toFixed(1),
      p.queueDepth,
    ]) {
      const td = document.createElement('td');
      td.textContent = String(text);
      tr.appendChild(td);
    }
    return tr;
  }));
}

function showMessage(text) {
  $('message').textContent = text;
}

async function pollStats() {
  try {
    const r = await fetch('/api/stats', { cache: 'no-store' });
    if (r.ok) stats = await r.json();
  } catch {
    stats = null;
  }
  renderStats();
  renderSelf();
}

// ------------------------------------------------------------------ controls

$('name').value = name;
$('name').addEventListener('change', () => {
  name = $('name').value.trim() || name;
  sessionStorage.setItem('entanglement-name', name);
});
$('team').value = team;
$('team').addEventListener('change', () => {
  team = $('team').value;
  sessionStorage.setItem('entanglement-team', team);
  connect();
});
$('slow').checked = slow;
$('slow').addEventListener('change', () => {
  slow = $('slow').checked;
  connect();
});

fetch('/api/node').then((r) => r.json()).then((n) => {
  nodeInfo = n;
  $('node-policy').textContent = n.policy === 'teams'
    ? 'policy teams: red and blue never see each other; staff sees everything'
    : 'policy open: everyone sees everything (start the node with --policy teams to split teams)';
}).catch(() => {});

connect();
setInterval(pollStats, 1000);
setInterval(render, 250); // cursor ages

window.demo = {
  clientId,
  get team() { return team; },
  get client() { return client; },
  get lastOutcome() { return lastOutcome; },
  get nodeInfo() { return nodeInfo; },
  shapes, myShapes, tentatives, cursors, counts,
};
