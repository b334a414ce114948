// The Entanglement client: a small node with one link (a WebSocket to a Java node) that speaks the
// protocol of docs/PROTOCOL.md. It owns objects (under its own owner id), holds the states others
// publish, proposes changes to their owners, answers proposals for its own objects and runs
// transitions. It relays nothing: its single peer is the path to every other owner.
//
// Connection state machine (the `state` property; every transition is in one method named here):
//
//   idle --connect()--> connecting --peer HELLO--> connected
//                         |    ^                      |
//           socket lost,  |    | retry timer          | socket lost, GOAWAY,
//           no HELLO in   v    |                      | silent peer, protocol error
//           time       backing-off <------------------+
//
//   any state --close()--> closed (final)
//
//   connecting:  #dial() opened a WebSocket; once it opens, HELLO, ROUTES, OWNER_REMOVED,
//                CATCH_UP and the active transitions are queued, in that order.
//   connected:   #onHello() accepted the peer's HELLO; the failure count restarts at 0.
//   backing-off: #lost() dropped the socket, failed its pending requests and armed the retry
//                timer: exponential backoff with full jitter (backoff.js).
//
// Invariants:
// - Everything sent on a socket goes through its `pending` map, in insertion order. States and
//   transition updates are keyed by object (or transition), so a key that is already pending
//   keeps its place and is written once, from the latest value, when the socket drains: the map
//   never holds more than one entry per key. The keepalive PING, the PONG and an ERROR refusing
//   something sent unasked are keyed too (the newest PING and PONG; while congested, one such
//   ERROR per code). Other messages (requests, answers) get unique keys: they are bounded by the
//   protocol's own exchanges, not by the publishing rate. Events
//   (unique types) never conflate, so while the socket is congested (its buffer at the threshold,
//   or it is closing) at most `maxQueuedEvents` of them are pending: one more drops the oldest
//   pending event (`eventsDropped` counts them), as a Java node does per link. Events queued while
//   the socket has room go out until it congests; then the newest `maxQueuedEvents` of the rest wait.
// - Entries are written only while socket.bufferedAmount is below `highWaterMark`; above it a
//   timer polls every `drainIntervalMs` until the socket has drained.
// - A received state is applied only if its version (epoch, serial) is newer than the one held.
// - Every request promise settles exactly once: with the owner's answer (an outcome value), or
//   rejected with an EntanglementError when the connection is lost, the client is closed or the
//   request times out.
// - This client's own objects are versioned by (epoch, serial) with epoch = the start time: it
//   keeps no store, so every start is a new epoch and serials restart at 1. A peer that holds a
//   later epoch of the owner (the clock went back since an earlier start) moves it above that one.

import {
  encodeFrame, decodeFrame, ProtocolError, PROTOCOL_VERSION, DEFAULT_MAX_FRAME, HEADER_BYTES,
} from './codec.js';
import { canonicalKey, randomUuid } from './keys.js';
import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';

/** Defaults of the options of EntanglementClient (see its constructor). */
export const DEFAULTS = Object.freeze({
  backoff: DEFAULT_BACKOFF,
  highWaterMark: 16 * 1024,
  drainIntervalMs: 10,
  keepAliveMs: 15_000,
  handshakeTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  decisionTimeoutMs: 10_000,
  transitionTtlMs: 5_000,
  maxFrame: DEFAULT_MAX_FRAME,
  maxQueuedEvents: 1_024,
});

const OPEN = 1; // WebSocket.OPEN
const TERMINAL_STATES = new Set(['CONFIRMED', 'BROKEN', 'REJECTED', 'EXPIRED', 'ABORTED']);
const ENDED_TRANSITIONS_REMEMBERED = 4096;
// The ERROR codes of PROTOCOL.md §5.
const ERROR_CODES = new Set([
  'UNAUTHORIZED', 'BAD_OWNER', 'NOT_FOUND', 'BAD_ENCODING', 'UNKNOWN_TYPE', 'INVALID_OPERATION',
  'BROKEN_TRANSITION', 'TIMEOUT', 'LIMIT_EXCEEDED', 'NOT_CONNECTED', 'NO_RESPONSE', 'WITHHELD',
]);
const EVENTS_REMEMBERED = 4096;
// What every store can keep (PROTOCOL.md §4.1), in UTF-16 units: a peer refuses the whole link,
// BAD_ENCODING, over a message naming a longer key, type name or owner id, or one with U+0000.
const MAX_KEY_LENGTH = 500;
const MAX_TYPE_LENGTH = 100;
const MAX_OWNER_LENGTH = 200;

function storable(text, max) {
  return text.length <= max && !text.includes('\u0000');
}

/** A failure (not a rejection): lost connection, closed client, timeout, no response. */
export class EntanglementError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'EntanglementError';
    this.code = code;
  }
}

/** Whether version a = {epoch, serial} is newer than b (a missing b is older than anything). */
function newer(a, b) {
  return !b || a.epoch > b.epoch || (a.epoch === b.epoch && a.serial > b.serial);
}

function objectKey(type, key) {
  return `${type}\u0000${key}`;
}

function snapshotOf(s) {
  return Object.freeze({
    type: s.objectType, key: s.key, owner: s.owner, epoch: s.epoch, serial: s.serial,
    committedAt: s.committedAt, deleted: s.deleted, value: s.deleted ? null : s.attributes,
  });
}

function syncOf(snap) {
  return {
    type: 'SYNC', objectType: snap.type, key: snap.key, owner: snap.owner, epoch: snap.epoch,
    serial: snap.serial, committedAt: snap.committedAt, deleted: snap.deleted,
    attributes: snap.deleted ? {} : snap.value,
  };
}

const committed = (state) => Object.freeze({ committed: true, state });
const rejected = (code, message) => Object.freeze({ committed: false, code, message });

/** Reports an exception thrown by application code without breaking the client's own work. */
function reportError(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else queueMicrotask(() => { throw e; });
}

/** A Map used as a bounded set of recently seen keys, oldest first. */
function remember(map, key, value, max) {
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value);
}

/**
 * A client node. Create it with options, then call connect().
 *
 * Options (defaults in DEFAULTS):
 * - url: the WebSocket URL of a Java node's endpoint (required).
 * - types: {TypeName: {key: value => keyValue, unique?: boolean}}, the types this client knows;
 *   `key` extracts the key of a value (a scalar, or an object for a composite key); `unique` marks
 *   event types, whose every publish is a new object delivered once and never stored.
 * - nodeId: this node's id (default: "js-" and a random suffix).
 * - ownerId: the owner id of this client's objects (default: the node id). Use one per client:
 *   two clients with one owner id would overwrite each other's objects.
 * - epoch: the epoch of this start (default: the clock's current time in ms).
 * - decide(proposal): answers proposals for this client's objects; default: accept. It receives
 *   {kind: 'UPDATE'|'DELETE'|'CREATE', type, key, current, proposed, transitionId, from} and
 *   returns (or resolves to) undefined or true to commit `proposed`, {commit: value} to commit
 *   another value, false to reject with UNAUTHORIZED, or {reject: code, message} to reject with a
 *   code of PROTOCOL.md §5 (Java nodes, and this client, read any other code as INVALID_OPERATION). Undecided after
 *   decisionTimeoutMs: rejected with TIMEOUT.
 * - backoff: {initialMs: 250, maxMs: 10000}: reconnection delays (backoff.js).
 * - highWaterMark: 16384; bytes of socket.bufferedAmount above which nothing more is written.
 * - drainIntervalMs: 10; how often a congested socket is polled.
 * - keepAliveMs: 15000; PING interval; a peer silent for three intervals is dropped.
 * - handshakeTimeoutMs: 10000; from dialing to the peer's HELLO.
 * - requestTimeoutMs: 30000; a proposal without answer then fails with TIMEOUT.
 * - decisionTimeoutMs: 10000; see decide.
 * - transitionTtlMs: 5000; a transition without update for this long ends as EXPIRED.
 * - maxFrame: 1048576; the largest frame body accepted (0 in HELLO means this default).
 * - maxQueuedEvents: 1024; events (unique types) that may wait for a congested socket (its buffer
 *   at highWaterMark, or closing); one more drops the oldest waiting event unsent (counted by
 *   `eventsDropped`). Events are written while the socket has room.
 * - WebSocket: the WebSocket constructor (default: globalThis.WebSocket).
 * - clock: {now(), setTimeout(fn, ms), clearTimeout(id)} (default: Date.now and the globals).
 * - random: a function returning [0, 1), for the backoff jitter (default: Math.random).
 */
export class EntanglementClient {
  #url;
  #types = new Map();
  #decide;
  #opts;
  #WebSocket;
  #clock;
  #random;

  #nodeId;
  #ownerId;
  #epoch;
  #serial = 0;

  #state = 'idle';
  /** Consecutive connections lost or failed since the last `connected`: the backoff's step. */
  #failures = 0;
  /** Connection attempts since the last `connected` (or the first connect()), this one included. */
  #attempts = 0;
  #retryTimer = null;
  /** The current connection (see #dial), or null while idle, backing off or closed. */
  #conn = null;

  /** Every object held, by objectKey(type, key): frozen snapshots, tombstones included. */
  #objects = new Map();
  /** For each other owner, the version up to which every state of it is held. */
  #watermarks = new Map();
  /** Removed owners and the epoch up to which their states are ignored. */
  #removedOwners = new Map();
  #recentEvents = new Map();
  /** Active transitions: objectKey -> (transition id -> slot). */
  #transitions = new Map();
  /** The object key each active transition id is open on: the same slots, by id. */
  #transitionKeys = new Map();
  #endedTransitions = new Map();
  /** Proposals waiting for `decide`: each gives up, without a timer left, when the client closes. */
  #undecided = new Set();
  #eventsDropped = 0;

  #watchers = new Map();
  #tentativeWatchers = new Map();
  #listeners = new Map();

  constructor(options) {
    const o = { ...DEFAULTS, ...options };
    if (typeof o.url !== 'string') throw new TypeError('options.url is required');
    this.#url = o.url;
    for (const [name, t] of Object.entries(o.types ?? {})) {
      if (!t.unique && typeof t.key !== 'function') throw new TypeError(`type ${name} needs a key function`);
      if (!storable(name, MAX_TYPE_LENGTH)) {
        throw new TypeError(`a type name is at most ${MAX_TYPE_LENGTH} characters, without U+0000`);
      }
      this.#types.set(name, { name, key: t.key, unique: Boolean(t.unique) });
    }
    this.#decide = o.decide ?? (() => true);
    this.#WebSocket = o.WebSocket ?? globalThis.WebSocket;
    if (typeof this.#WebSocket !== 'function') {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket');
    }
    this.#clock = o.clock ?? {
      now: () => Date.now(),
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (id) => clearTimeout(id),
    };
    this.#random = o.random ?? Math.random;
    if (!Number.isInteger(o.maxQueuedEvents) || o.maxQueuedEvents < 1) {
      throw new TypeError(`maxQueuedEvents must be a positive integer: ${o.maxQueuedEvents}`);
    }
    this.#opts = o;
    this.#nodeId = o.nodeId ?? `js-${randomUuid().slice(0, 8)}`;
    this.#ownerId = o.ownerId ?? this.#nodeId;
    if (typeof this.#ownerId !== 'string' || this.#ownerId.trim() === '' || !storable(this.#ownerId, MAX_OWNER_LENGTH)) {
      throw new TypeError(`an owner id is text, not blank, at most ${MAX_OWNER_LENGTH} characters, without U+0000`);
    }
    this.#epoch = o.epoch ?? this.#clock.now();
  }

  get nodeId() { return this.#nodeId; }
  get ownerId() { return this.#ownerId; }
  get epoch() { return this.#epoch; }
  /** 'idle', 'connecting', 'connected', 'backing-off' or 'closed'. */
  get state() { return this.#state; }
  /** Events dropped unsent because more than maxQueuedEvents waited for the socket. */
  get eventsDropped() { return this.#eventsDropped; }

  // ---------------------------------------------------------------- events

  /**
   * Listens to connection events; returns a function that stops listening.
   * - 'connecting' {attempt}: a WebSocket is being opened (attempt 1 after a success).
   * - 'connected' {peer}: the peer's HELLO arrived; `peer` is its node id.
   * - 'disconnected' {reason, retryInMs}: the socket is gone; retryInMs is null once closed.
   * - 'error' {code, message}: the peer refused something this client sent (ERROR without a
   *   request), or a frame could not be written.
   */
  on(event, listener) {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    const entry = { listener };
    set.add(entry);
    return () => set.delete(entry);
  }

  #emit(event, detail) {
    for (const { listener } of [...(this.#listeners.get(event) ?? [])]) this.#call(listener, detail);
  }

  #call(fn, arg) {
    try {
      fn(arg);
    } catch (e) {
      reportError(e);
    }
  }

  // ---------------------------------------------------------------- connection state machine

  /** idle -> connecting. Later calls do nothing; after close() it throws. */
  connect() {
    if (this.#state === 'closed') throw new EntanglementError('NOT_CONNECTED', 'the client is closed');
    if (this.#state === 'idle') this.#dial();
  }

  /**
   * Closes the connection for good. What is queued for the peer (the latest state of each own
   * object it lacks, events, answers) is written first, then GOAWAY (PROTOCOL.md §3 item 5); pending
   * requests fail with NOT_CONNECTED, and queued ones are not sent (their answers could not come
   * back).
   */
  close() {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#clock.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const conn = this.#conn;
    if (conn?.open && conn.socket.readyState === OPEN) this.#goAway(conn);
    if (this.#conn) this.#lost(this.#conn, 'closed by the client');
    for (const slots of this.#transitions.values()) {
      for (const slot of slots.values()) this.#clock.clearTimeout(slot.expiry);
    }
    for (const abandon of [...this.#undecided]) abandon();
  }

  /** -> connecting: opens a socket; the handshake timer covers opening and the peer's HELLO. */
  #dial() {
    this.#retryTimer = null;
    this.#attempts++;
    this.#state = 'connecting';
    let socket;
    try {
      socket = new this.#WebSocket(this.#url);
    } catch (e) {
      this.#emit('connecting', { attempt: this.#attempts });
      this.#conn = { socket: null, timers: new Set(), requests: new Map() };
      this.#lost(this.#conn, `cannot open ${this.#url}: ${e.message}`);
      return;
    }
    socket.binaryType = 'arraybuffer';
    const conn = {
      socket,
      open: false, // our HELLO is queued: anything may be queued after it
      ready: false, // the peer's HELLO arrived
      peer: null,
      peerMaxFrame: DEFAULT_MAX_FRAME,
      pending: new Map(),
      /** The slots of the events in `pending`, oldest first: at most maxQueuedEvents. */
      events: new Set(),
      nextSlot: 0,
      flushQueued: false,
      drainTimer: null,
      nextRequestId: 1,
      requests: new Map(),
      /** Per object, the newest version the peer is known to hold (sent or received). */
      held: new Map(),
      /** Per transition id, the last sequence number sent or received. */
      tentativeSeen: new Map(),
      /** Catch-up of other owners: objects received before their WATERMARK arrived. */
      catchUpSeen: new Map(),
      caughtUp: new Set(),
      lastReceived: this.#clock.now(),
      timers: new Set(),
    };
    this.#conn = conn;
    this.#timer(conn, this.#opts.handshakeTimeoutMs, () => {
      if (!conn.ready) this.#refuse(conn, 'TIMEOUT', `no HELLO within ${this.#opts.handshakeTimeoutMs} ms`);
    });
    socket.onopen = () => this.#opened(conn);
    socket.onmessage = (ev) => this.#received(conn, ev.data);
    socket.onclose = (ev) => {
      this.#lost(conn, `connection closed (code ${ev.code}${ev.reason ? `, ${ev.reason}` : ''})`);
    };
    socket.onerror = () => {}; // a close event follows and carries the reason
    this.#emit('connecting', { attempt: this.#attempts });
  }

  /** A one-shot timer that dies with its connection. */
  #timer(conn, ms, fn) {
    const id = this.#clock.setTimeout(() => {
      conn.timers.delete(id);
      if (conn === this.#conn) fn();
    }, ms);
    conn.timers.add(id);
    return id;
  }

  /** The socket opened: queue the opening of the protocol (PROTOCOL.md §3). */
  #opened(conn) {
    if (conn !== this.#conn) return;
    conn.open = true;
    conn.lastReceived = this.#clock.now();
    this.#send(conn, {
      type: 'HELLO', protocolVersion: PROTOCOL_VERSION, nodeId: this.#nodeId,
      owners: [{ owner: this.#ownerId, epoch: this.#epoch }],
      maxFrame: this.#opts.maxFrame === DEFAULT_MAX_FRAME ? 0 : this.#opts.maxFrame,
    });
    this.#send(conn, { type: 'ROUTES', hops: { [this.#ownerId]: 0 } });
    for (const [owner, epoch] of this.#removedOwners) this.#send(conn, { type: 'OWNER_REMOVED', owner, epoch });
    const holds = [...this.#watermarks].map(([owner, v]) => ({ owner, epoch: v.epoch, serial: v.serial }));
    this.#send(conn, { type: 'CATCH_UP', holds });
    for (const slots of this.#transitions.values()) {
      for (const slot of slots.values()) this.#queueTransition(conn, slot);
    }
    this.#keepAlive(conn);
  }

  /** Every keepAliveMs: drop a peer silent for three intervals, else PING it. */
  #keepAlive(conn) {
    const interval = this.#opts.keepAliveMs;
    this.#timer(conn, interval, () => {
      const silent = this.#clock.now() - conn.lastReceived;
      if (silent >= 3 * interval) {
        this.#lost(conn, `peer silent for ${silent} ms`);
        return;
      }
      this.#queue(conn, 'ping', { message: { type: 'PING', nonce: this.#clock.now() } }); // the newest waits
      this.#keepAlive(conn);
    });
  }

  /**
   * -> backing-off (or stays closed): forgets the connection, fails its pending requests and arms
   * the retry timer. Ignores a connection that is no longer the current one.
   */
  #lost(conn, reason) {
    if (conn !== this.#conn) return;
    this.#conn = null;
    for (const id of conn.timers) this.#clock.clearTimeout(id);
    this.#clock.clearTimeout(conn.drainTimer);
    const socket = conn.socket;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
      try {
        socket.close(1000);
      } catch {
        // already closed
      }
    }
    for (const r of conn.requests.values()) {
      this.#clock.clearTimeout(r.timer);
      r.reject(new EntanglementError('NOT_CONNECTED', `request not answered: ${reason}`));
    }
    conn.requests.clear();
    if (this.#state === 'closed') {
      this.#emit('disconnected', { reason, retryInMs: null });
      return;
    }
    const delay = backoffDelay(this.#failures, this.#opts.backoff, this.#random);
    this.#failures++;
    this.#state = 'backing-off';
    this.#retryTimer = this.#clock.setTimeout(() => this.#dial(), delay);
    this.#emit('disconnected', { reason, retryInMs: delay });
  }

  /**
   * Writes everything queued but requests, whatever the socket holds already (at most an entry per
   * object, the bounded events and the protocol's answers), then GOAWAY as the last frame. The
   * socket's close, which follows, is sent after them.
   */
  #goAway(conn) {
    for (const [slot, entry] of conn.pending) {
      conn.pending.delete(slot);
      const type = entry.message?.type;
      if (type === 'PROPOSE' || type === 'CREATE') continue;
      const message = this.#materialize(conn, entry);
      if (message) this.#write(conn, message);
    }
    conn.events.clear();
    this.#write(conn, { type: 'GOAWAY', code: 'SHUTDOWN', message: `node ${this.#nodeId} is closing` });
  }

  /** A protocol error: one ERROR frame, then the socket is closed (PROTOCOL.md §6). */
  #refuse(conn, code, message) {
    if (conn.open && conn.socket.readyState === OPEN) {
      conn.socket.send(encodeFrame({ type: 'ERROR', inReplyTo: 0, code, message }));
    }
    this.#lost(conn, `${code}: ${message}`);
  }

  // ---------------------------------------------------------------- sending

  /** Queues a message under a key of its own (never conflated). */
  #send(conn, message) {
    this.#queue(conn, `m${conn.nextSlot++}`, { message });
  }

  /**
   * Queues an ERROR refusing something the peer sent unasked (no request id). It is informational:
   * while the socket is congested a newer one replaces a pending one of its code, so a flood of
   * refused messages costs one entry per code.
   */
  #refuseUnasked(conn, code, message) {
    const slot = this.#congested(conn) ? `r${code}` : `m${conn.nextSlot++}`;
    this.#queue(conn, slot, { message: { type: 'ERROR', inReplyTo: 0, code, message } });
  }

  /** Queues a state of this client's object; an entry already pending for it keeps its place. */
  #queueState(conn, k) {
    this.#queue(conn, `s${k}`, { state: k });
  }

  /** Queues an event (never conflated); see #dropOldEvents. */
  #queueEvent(conn, message) {
    if (this.#congested(conn)) this.#dropOldEvents(conn, this.#opts.maxQueuedEvents - 1);
    const slot = `e${conn.nextSlot++}`;
    conn.events.add(slot);
    this.#queue(conn, slot, { message });
  }

  /** Whether nothing can be written now: the socket's buffer is at the threshold, or it is closing. */
  #congested(conn) {
    return conn.socket.readyState !== OPEN || conn.socket.bufferedAmount >= this.#opts.highWaterMark;
  }

  /** While the socket is congested: drops the oldest pending events until at most `keep` are left. */
  #dropOldEvents(conn, keep) {
    while (conn.events.size > keep) {
      const oldest = conn.events.values().next().value;
      conn.events.delete(oldest);
      conn.pending.delete(oldest);
      this.#eventsDropped++;
    }
  }

  #queueTransition(conn, slot) {
    this.#queue(conn, `t${slot.id}`, { transition: slot });
  }

  #queue(conn, slot, entry) {
    conn.pending.set(slot, entry);
    // Written at the end of the current task, so that a burst of changes conflates.
    if (!conn.flushQueued && conn.drainTimer === null) {
      conn.flushQueued = true;
      queueMicrotask(() => {
        conn.flushQueued = false;
        this.#flush(conn);
      });
    }
  }

  /** Writes pending entries, oldest first, while the socket's buffer is below the threshold. */
  #flush(conn) {
    if (conn !== this.#conn || conn.socket.readyState !== OPEN) return;
    while (conn.pending.size > 0) {
      if (conn.socket.bufferedAmount >= this.#opts.highWaterMark) {
        this.#dropOldEvents(conn, this.#opts.maxQueuedEvents);
        conn.drainTimer = this.#clock.setTimeout(() => {
          conn.drainTimer = null;
          this.#flush(conn);
        }, this.#opts.drainIntervalMs);
        return;
      }
      const [slot, entry] = conn.pending.entries().next().value;
      conn.pending.delete(slot);
      conn.events.delete(slot);
      const message = this.#materialize(conn, entry);
      if (message) this.#write(conn, message);
    }
  }

  /** The message of a pending entry, built from the current state; null if nothing to send. */
  #materialize(conn, entry) {
    if (entry.message) return entry.message;
    if (entry.state) {
      const snap = this.#objects.get(entry.state);
      if (!snap || !newer(snap, conn.held.get(entry.state))) return null;
      conn.held.set(entry.state, { epoch: snap.epoch, serial: snap.serial });
      return syncOf(snap);
    }
    const slot = entry.transition;
    const slots = this.#transitions.get(objectKey(slot.type, slot.key));
    if (slots?.get(slot.id) !== slot || (conn.tentativeSeen.get(slot.id) ?? -1) >= slot.seq) return null;
    // The committed version the tentative value is merged into here; without one, nothing to send.
    const base = this.#objects.get(objectKey(slot.type, slot.key));
    if (!base || base.deleted) return null;
    conn.tentativeSeen.set(slot.id, slot.seq);
    return {
      type: 'TRANSITION', objectType: slot.type, key: slot.key, owner: slot.owner, baseEpoch: base.epoch,
      baseSerial: base.serial, transitionId: slot.id, origin: slot.origin, seq: slot.seq, partial: slot.partial,
      attributes: slot.attributes,
    };
  }

  #write(conn, message) {
    let frame;
    try {
      frame = encodeFrame(message);
    } catch (e) {
      this.#unsendable(conn, message, `${message.type} could not be encoded: ${e.message}`);
      return;
    }
    if (frame.length - HEADER_BYTES > conn.peerMaxFrame) {
      this.#unsendable(conn, message,
        `${message.type} of ${frame.length - HEADER_BYTES} bytes exceeds the peer's maximum`);
      return;
    }
    conn.socket.send(frame);
  }

  #unsendable(conn, message, why) {
    const request = message.requestId !== undefined ? conn.requests.get(message.requestId) : undefined;
    if (request) {
      conn.requests.delete(message.requestId);
      this.#clock.clearTimeout(request.timer);
      request.reject(new EntanglementError('BAD_ENCODING', why));
    }
    this.#emit('error', { code: 'BAD_ENCODING', message: why });
  }

  /**
   * Sends a request (PROPOSE or CREATE) and returns the promise of its outcome: an outcome value
   * for the owner's answer, a rejection (EntanglementError) for a failure.
   */
  #request(message) {
    const conn = this.#conn;
    if (!conn?.open) {
      return Promise.reject(new EntanglementError('NOT_CONNECTED', `not connected (${this.#state})`));
    }
    const requestId = conn.nextRequestId++;
    const slot = `m${conn.nextSlot++}`;
    return new Promise((resolve, reject) => {
      const timer = this.#timer(conn, this.#opts.requestTimeoutMs, () => {
        conn.requests.delete(requestId);
        conn.pending.delete(slot); // not sent yet (a congested socket): it never will be
        reject(new EntanglementError('TIMEOUT', `no answer in ${this.#opts.requestTimeoutMs} ms`));
      });
      conn.requests.set(requestId, { resolve, reject, timer });
      this.#queue(conn, slot, { message: { ...message, requestId, hops: 0 } });
    });
  }

  /** Ends a request of ours with an answer from the peer; returns it, or undefined if unknown. */
  #answered(conn, requestId) {
    const r = conn.requests.get(requestId);
    if (r) {
      conn.requests.delete(requestId);
      conn.timers.delete(r.timer);
      this.#clock.clearTimeout(r.timer);
    }
    return r;
  }

  // ---------------------------------------------------------------- receiving

  #received(conn, data) {
    if (conn !== this.#conn) return;
    conn.lastReceived = this.#clock.now();
    if (typeof data === 'string') {
      this.#refuse(conn, 'BAD_ENCODING', 'text messages are refused');
      return;
    }
    let m;
    try {
      m = decodeFrame(data, this.#opts.maxFrame);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.#refuse(conn, e.code, e.message);
      return;
    }
    if (!conn.ready && m.type === 'ERROR') {
      // The peer refused the connection before its HELLO: an ERROR is never answered.
      this.#lost(conn, `refused: ${m.code}: ${m.message}`);
      return;
    }
    if (!conn.ready && m.type !== 'HELLO') {
      this.#refuse(conn, 'INVALID_OPERATION', 'the first message must be HELLO');
      return;
    }
    switch (m.type) {
      case 'HELLO': this.#onHello(conn, m); break;
      case 'ROUTES': break; // one link: every owner is reached through it
      case 'SYNC': this.#onSync(conn, m); break;
      case 'WITHDRAW': this.#onWithdraw(conn, m); break;
      case 'PROPOSE': this.#onPropose(conn, m); break;
      case 'CREATE': this.#onCreate(conn, m); break;
      case 'TRANSITION': this.#onTransition(conn, m); break;
      case 'TRANSITION_END': this.#onTransitionEnd(conn, m); break;
      case 'RESPONSE': this.#onResponse(conn, m); break;
      case 'ERROR': this.#onError(conn, m); break;
      case 'NO_RESPONSE':
        this.#answered(conn, m.inReplyTo)?.reject(
          new EntanglementError('NO_RESPONSE', 'a relay could not reach the owner'));
        break;
      case 'OWNER_REMOVED': this.#onOwnerRemoved(conn, m); break;
      // The newest PING's answer replaces a pending one: a PONG tells the peer that what it sent
      // before that PING was read, so the newest tells it all (PROTOCOL.md §3).
      case 'PING': this.#queue(conn, 'pong', { message: { type: 'PONG', nonce: m.nonce } }); break;
      case 'PONG': break; // its arrival already counts as life
      case 'GOAWAY': this.#lost(conn, `GOAWAY ${m.code}: ${m.message}`); break;
      case 'CATCH_UP': this.#onCatchUp(conn, m); break;
      case 'WATERMARK': this.#onWatermark(conn, m); break;
      default: throw new Error(`unhandled message ${m.type}`);
    }
  }

  /** -> connected. */
  #onHello(conn, m) {
    if (conn.ready) {
      this.#refuse(conn, 'INVALID_OPERATION', 'HELLO received twice');
      return;
    }
    if (m.protocolVersion !== PROTOCOL_VERSION) {
      this.#refuse(conn, 'INVALID_OPERATION', `unsupported protocol version ${m.protocolVersion}`);
      return;
    }
    conn.ready = true;
    conn.peer = m.nodeId;
    conn.peerMaxFrame = m.maxFrame > 0 ? m.maxFrame : DEFAULT_MAX_FRAME;
    this.#failures = 0;
    this.#attempts = 0;
    this.#state = 'connected';
    this.#emit('connected', { peer: m.nodeId });
  }

  #onSync(conn, s) {
    const t = this.#types.get(s.objectType);
    if (!t) {
      this.#refuseUnasked(conn, 'UNKNOWN_TYPE', `unknown type ${s.objectType}`);
      return;
    }
    const refused = t.unique ? this.#applyEvent(s) : this.#applyState(conn, s);
    if (refused) {
      this.#refuseUnasked(conn, refused, `${refused} for ${s.objectType}/${s.key} of owner ${s.owner}`);
    }
  }

  /** Applies a state of another owner if it is newer than the one held; returns a refusal code or null. */
  #applyState(conn, s) {
    if (s.owner === this.#ownerId) return 'BAD_OWNER';
    const removed = this.#removedOwners.get(s.owner);
    if (removed !== undefined && removed >= s.epoch) return null;
    const k = objectKey(s.objectType, s.key);
    if (!conn.caughtUp.has(s.owner)) {
      let seen = conn.catchUpSeen.get(s.owner);
      if (!seen) conn.catchUpSeen.set(s.owner, (seen = new Set()));
      seen.add(k);
    }
    if (newer(s, conn.held.get(k))) conn.held.set(k, { epoch: s.epoch, serial: s.serial });
    const cur = this.#objects.get(k);
    if (cur) {
      if (cur.owner !== s.owner) {
        if (!cur.deleted) return 'BAD_OWNER';
      } else if (!newer(s, cur)) {
        return null;
      }
    }
    const snap = snapshotOf(s);
    this.#objects.set(k, snap);
    this.#notify(snap);
    return null;
  }

  /** An event (unique type): delivered once, never stored. */
  #applyEvent(s) {
    if (s.owner === this.#ownerId) return 'BAD_OWNER';
    const k = objectKey(s.objectType, s.key);
    if (this.#recentEvents.has(k)) return null;
    remember(this.#recentEvents, k, true, EVENTS_REMEMBERED);
    this.#notify(snapshotOf(s));
    return null;
  }

  /** A withdrawal covers its owner's states up to its version: a newer state held stays. */
  #onWithdraw(conn, w) {
    const k = objectKey(w.objectType, w.key);
    conn.held.delete(k);
    const cur = this.#objects.get(k);
    if (cur && cur.owner === w.owner && cur.owner !== this.#ownerId && !newer(cur, w)) this.#drop(k, cur);
  }

  /** Forgets an object of another owner; watchers see it deleted. */
  #drop(k, snap) {
    this.#objects.delete(k);
    if (!snap.deleted) this.#notify(Object.freeze({ ...snap, deleted: true, value: null }));
  }

  #onOwnerRemoved(conn, m) {
    if (m.owner === this.#ownerId) {
      this.#refuseUnasked(conn, 'BAD_OWNER', `${m.owner} is local to ${this.#nodeId}`);
      return;
    }
    const known = this.#removedOwners.get(m.owner);
    if (known !== undefined && known >= m.epoch) return;
    this.#removedOwners.set(m.owner, m.epoch);
    this.#watermarks.delete(m.owner);
    for (const [k, snap] of [...this.#objects]) {
      if (snap.owner === m.owner && snap.epoch <= m.epoch) this.#drop(k, snap);
    }
  }

  /**
   * The peer says up to which version it holds each owner. For this client's owner, send what it
   * lacks (everything if it knows another epoch, or nothing of it), then a WATERMARK, which
   * leaves after those states because the pending map keeps insertion order.
   */
  #onCatchUp(conn, m) {
    const mark = m.holds.find((h) => h.owner === this.#ownerId);
    if (mark && mark.epoch > this.#epoch) this.#outgrowEpoch(mark.epoch);
    const full = !mark || mark.epoch !== this.#epoch;
    for (const [k, snap] of this.#objects) {
      if (snap.owner === this.#ownerId && (full || newer(snap, mark))) this.#queueState(conn, k);
    }
    this.#send(conn, { type: 'WATERMARK', owner: this.#ownerId, epoch: this.#epoch, serial: this.#serial, full });
  }

  /**
   * The peer holds states of this client's owner from a later epoch than this start's: an earlier
   * start with the same owner id ran when the clock was ahead of now. Those states would hide every
   * state of this start, which are older by version, so this start moves to an epoch above the
   * peer's and versions each of its objects again there (same values; watchers see the new
   * versions). The full catch-up that follows sends them, and the peer drops the earlier start's
   * objects that this start does not hold.
   */
  #outgrowEpoch(peerEpoch) {
    this.#epoch = Math.max(this.#clock.now(), peerEpoch + 1);
    this.#serial = 0;
    for (const [k, snap] of [...this.#objects]) {
      if (snap.owner !== this.#ownerId) continue;
      const next = Object.freeze({ ...snap, epoch: this.#epoch, serial: ++this.#serial });
      this.#objects.set(k, next);
      if (!next.deleted) this.#notify(next);
    }
  }

  #onWatermark(conn, w) {
    if (w.owner === this.#ownerId) return;
    if (w.full) {
      // Every state of that owner up to w was sent since our CATCH_UP: the rest is gone.
      const seen = conn.catchUpSeen.get(w.owner) ?? new Set();
      for (const [k, snap] of [...this.#objects]) {
        if (snap.owner === w.owner && !newer(snap, w) && !seen.has(k)) this.#drop(k, snap);
      }
    }
    conn.caughtUp.add(w.owner);
    conn.catchUpSeen.delete(w.owner);
    if (newer(w, this.#watermarks.get(w.owner))) this.#watermarks.set(w.owner, { epoch: w.epoch, serial: w.serial });
  }

  #onResponse(conn, m) {
    const r = this.#answered(conn, m.inReplyTo);
    if (!r) return;
    const t = this.#types.get(m.state.objectType);
    if (!t) {
      r.resolve(rejected('UNKNOWN_TYPE', `unknown type ${m.state.objectType}`));
      return;
    }
    if (!t.unique) this.#applyState(conn, m.state);
    r.resolve(committed(snapshotOf(m.state)));
  }

  #onError(conn, m) {
    // A code this client does not know reads as INVALID_OPERATION (PROTOCOL.md §5), as in Java.
    const code = ERROR_CODES.has(m.code) ? m.code : 'INVALID_OPERATION';
    if (m.inReplyTo === 0) {
      this.#emit('error', { code, message: m.message });
      return;
    }
    this.#answered(conn, m.inReplyTo)?.resolve(rejected(code, m.message));
  }

  // ---------------------------------------------------------------- owner side: proposals

  /** How a received request is answered on its connection (dropped if that connection is gone). */
  #remoteAnswer(conn, requestId) {
    const reply = (message) => {
      if (conn === this.#conn) this.#send(conn, message);
    };
    return {
      abandon: () => {}, // closed: no answer can be sent
      commit: (snap) => {
        // The RESPONSE stands in for this version's SYNC on its link (PROTOCOL.md §4.3): the peer
        // counts as holding it, so the state entry queued by the commit sends nothing older.
        if (conn === this.#conn) {
          conn.held.set(objectKey(snap.type, snap.key), { epoch: snap.epoch, serial: snap.serial });
        }
        reply({ type: 'RESPONSE', inReplyTo: requestId, state: syncOf(snap) });
      },
      reject: (code, message) => reply({ type: 'ERROR', inReplyTo: requestId, code, message }),
    };
  }

  #onPropose(conn, p) {
    const answer = this.#remoteAnswer(conn, p.requestId);
    if (p.kind !== 'UPDATE' && p.kind !== 'DELETE') {
      this.#refuse(conn, 'BAD_ENCODING', `unknown proposal kind ${p.kind}`);
      return;
    }
    if (p.owner !== this.#ownerId) {
      // A leaf relays nothing: it has no other link toward that owner.
      this.#send(conn, { type: 'NO_RESPONSE', inReplyTo: p.requestId });
      return;
    }
    if (!this.#types.has(p.objectType)) {
      answer.reject('UNKNOWN_TYPE', `unknown type ${p.objectType}`);
      return;
    }
    this.#offerProposal({
      kind: p.kind, type: p.objectType, key: p.key, partial: p.partial, attributes: p.attributes,
      transitionId: p.transitionId, from: conn.peer,
    }, answer);
  }

  #onCreate(conn, c) {
    const answer = this.#remoteAnswer(conn, c.requestId);
    if (c.owner !== this.#ownerId) {
      this.#send(conn, { type: 'NO_RESPONSE', inReplyTo: c.requestId });
      return;
    }
    if (!this.#types.has(c.objectType)) {
      answer.reject('UNKNOWN_TYPE', `unknown type ${c.objectType}`);
      return;
    }
    this.#offerProposal({
      kind: 'CREATE', type: c.objectType, key: null, partial: false, attributes: c.attributes,
      transitionId: null, from: conn.peer,
    }, answer);
  }

  /** The canonical key of a value of a type, or null if the key function fails or no store could keep it. */
  #keyOrNull(t, value) {
    try {
      const key = canonicalKey(t.key(value));
      return storable(key, MAX_KEY_LENGTH) ? key : null;
    } catch {
      return null;
    }
  }

  /**
   * Checks a request for an object of this client (as the Java owner does), then asks `decide`.
   * `answer` gets exactly one of commit(snapshot) or reject(code, message).
   */
  #offerProposal(req, answer) {
    const t = this.#types.get(req.type);
    let { key } = req;
    let cur = key === null ? undefined : this.#objects.get(objectKey(req.type, key));
    let proposed = null;
    if (req.kind === 'CREATE') {
      proposed = req.attributes;
      key = this.#keyOrNull(t, proposed);
      cur = key === null ? undefined : this.#objects.get(objectKey(req.type, key));
      if (cur && !cur.deleted) {
        answer.reject('INVALID_OPERATION', `${req.type}/${key} already exists`);
        return;
      }
    } else {
      if (!cur || cur.deleted) {
        answer.reject('NOT_FOUND', `${req.type}/${key} does not exist; a proposal cannot create`);
        return;
      }
      if (cur.owner !== this.#ownerId) {
        answer.reject('BAD_OWNER', `${req.type}/${key} is owned by ${cur.owner}`);
        return;
      }
      const ended = req.transitionId && this.#endedTransitions.get(req.transitionId);
      if (ended) {
        answer.reject('BROKEN_TRANSITION', `transition ${req.transitionId} ${ended}`);
        return;
      }
      const openOn = req.transitionId && this.#transitionKeys.get(req.transitionId);
      if (openOn && openOn !== objectKey(req.type, key)) {
        answer.reject('INVALID_OPERATION', `transition ${req.transitionId} is open on another object`);
        return;
      }
      if (req.kind === 'UPDATE') {
        proposed = req.partial ? { ...cur.value, ...req.attributes } : req.attributes;
        if (this.#keyOrNull(t, proposed) !== key) {
          answer.reject('INVALID_OPERATION', 'a proposal cannot change the key');
          return;
        }
      }
    }
    const proposal = Object.freeze({
      kind: req.kind, type: req.type, key, current: cur && !cur.deleted ? cur : null, proposed,
      transitionId: req.transitionId, from: req.from,
    });
    let decided = false;
    const done = () => {
      decided = true;
      this.#undecided.delete(abandon);
      this.#clock.clearTimeout(timer);
    };
    const decide = (decision) => {
      if (decided) return;
      done();
      this.#applyDecision(t, req, key, proposed, decision, answer);
    };
    const abandon = () => {
      done();
      answer.abandon();
    };
    const timer = this.#clock.setTimeout(
      () => decide({ reject: 'TIMEOUT', message: 'the owner did not decide in time' }),
      this.#opts.decisionTimeoutMs);
    this.#undecided.add(abandon);
    const failed = (e) => {
      reportError(e);
      decide({ reject: 'INVALID_OPERATION', message: 'the owner failed to decide' });
    };
    try {
      const d = this.#decide(proposal);
      if (d && typeof d.then === 'function') d.then(decide, failed);
      else decide(d);
    } catch (e) {
      failed(e);
    }
  }

  #applyDecision(t, req, proposedKey, proposed, decision, answer) {
    if (decision === false || (decision && decision.reject !== undefined)) {
      const code = decision === false ? 'UNAUTHORIZED' : String(decision.reject);
      answer.reject(code, decision === false ? 'rejected by the owner' : String(decision.message ?? code));
      if (req.transitionId && proposedKey !== null) {
        this.#endTransition(objectKey(req.type, proposedKey), req.transitionId, 'REJECTED', true);
      }
      return;
    }
    const value = decision && decision.commit !== undefined ? decision.commit : proposed;
    const key = req.kind === 'DELETE' ? proposedKey : this.#keyOrNull(t, value);
    if (key === null) {
      answer.reject('INVALID_OPERATION', 'the committed value has no valid key');
      return;
    }
    const cur = this.#objects.get(objectKey(req.type, key));
    if (req.kind === 'CREATE') {
      if (cur && !cur.deleted) {
        answer.reject('INVALID_OPERATION', `${req.type}/${key} already exists`);
        return;
      }
    } else {
      if (key !== proposedKey) {
        answer.reject('INVALID_OPERATION', 'a commit cannot change the key');
        return;
      }
      if (!cur || cur.deleted || cur.owner !== this.#ownerId) {
        answer.reject('NOT_FOUND', `${req.type}/${key} no longer exists`);
        return;
      }
      const ended = req.transitionId && this.#endedTransitions.get(req.transitionId);
      if (ended) {
        answer.reject('BROKEN_TRANSITION', `transition ${req.transitionId} ${ended}`);
        return;
      }
    }
    const deleted = req.kind === 'DELETE';
    answer.commit(this.#commitLocal(req.type, key, deleted ? null : value, deleted, req.transitionId));
  }

  /** Commits a new version of one of this client's objects and queues it for the peer. */
  #commitLocal(type, key, value, deleted, confirmsTransition) {
    const k = objectKey(type, key);
    const snap = Object.freeze({
      type, key, owner: this.#ownerId, epoch: this.#epoch, serial: ++this.#serial,
      committedAt: this.#clock.now(), deleted, value: deleted ? null : value,
    });
    this.#objects.set(k, snap);
    this.#notify(snap);
    if (this.#conn?.open) this.#queueState(this.#conn, k);
    this.#settleTransitions(k, confirmsTransition);
    return snap;
  }

  // ---------------------------------------------------------------- public API: objects

  #type(name) {
    const t = this.#types.get(name);
    if (!t) throw new TypeError(`type ${name} is not declared in options.types`);
    return t;
  }

  /**
   * Publishes a value of one of this client's objects (its key comes from the type's key
   * function): a new version, sent to the peer once the socket drains, conflated with any
   * pending one. Returns the committed snapshot. The value must not be mutated afterwards.
   */
  publish(type, value) {
    const t = this.#type(type);
    if (this.#state === 'closed') throw new EntanglementError('NOT_CONNECTED', 'the client is closed');
    if (t.unique) {
      const snap = Object.freeze({
        type, key: randomUuid(), owner: this.#ownerId, epoch: this.#epoch, serial: ++this.#serial,
        committedAt: this.#clock.now(), deleted: false, value,
      });
      this.#notify(snap);
      const conn = this.#conn;
      if (conn?.open) this.#queueEvent(conn, syncOf(snap));
      return snap;
    }
    const key = canonicalKey(t.key(value));
    if (!storable(key, MAX_KEY_LENGTH)) {
      throw new TypeError(`a key is at most ${MAX_KEY_LENGTH} characters, without U+0000`);
    }
    const cur = this.#objects.get(objectKey(type, key));
    if (cur && !cur.deleted && cur.owner !== this.#ownerId) {
      throw new EntanglementError('BAD_OWNER', `${type}/${key} is owned by ${cur.owner}; propose a change instead`);
    }
    return this.#commitLocal(type, key, value, false, null);
  }

  /**
   * Deletes an object. This client's own: a tombstone, committed at once. Another owner's: a
   * delete request to that owner. Resolves to an outcome like propose().
   */
  delete(type, keyValue) {
    this.#type(type);
    const key = canonicalKey(keyValue);
    const cur = this.#objects.get(objectKey(type, key));
    if (!cur || cur.deleted) return Promise.resolve(rejected('NOT_FOUND', `${type}/${key} does not exist`));
    return this.#propose(type, key, cur, 'DELETE', {}, null);
  }

  /**
   * Proposes attributes to merge into an object; the owner decides. Resolves to
   * {committed: true, state} or {committed: false, code, message} (a rejection is a value); rejects
   * with an EntanglementError only on failure (not connected, connection lost, timeout, no route).
   */
  propose(type, keyValue, attributes) {
    this.#type(type);
    const key = canonicalKey(keyValue);
    const cur = this.#objects.get(objectKey(type, key));
    if (!cur || cur.deleted) return Promise.resolve(rejected('NOT_FOUND', `${type}/${key} does not exist`));
    return this.#propose(type, key, cur, 'UPDATE', attributes, null);
  }

  #propose(type, key, cur, kind, attributes, transitionId) {
    if (this.#state === 'closed') {
      return Promise.reject(new EntanglementError('NOT_CONNECTED', 'the client is closed'));
    }
    if (cur.owner === this.#ownerId) {
      if (kind === 'DELETE' && !transitionId) {
        return Promise.resolve(committed(this.#commitLocal(type, key, null, true, null)));
      }
      return new Promise((resolve, reject) => {
        this.#offerProposal(
          { kind, type, key, partial: true, attributes, transitionId, from: null },
          {
            commit: (snap) => resolve(committed(snap)),
            reject: (code, message) => resolve(rejected(code, message)),
            abandon: () => reject(new EntanglementError('NOT_CONNECTED', 'the client is closed')),
          });
      });
    }
    return this.#request({
      type: 'PROPOSE', kind, objectType: type, key, owner: cur.owner, partial: true, attributes, transitionId,
    });
  }

  /** The latest snapshot held for a key (possibly a tombstone), or undefined. */
  get(type, keyValue) {
    return this.#objects.get(objectKey(type, canonicalKey(keyValue)));
  }

  /**
   * Calls `callback(snapshot)` with the current state of one object, if held, and then with every
   * change. A snapshot is {type, key, owner, epoch, serial, committedAt, deleted, value}; an object
   * deleted by its owner, withdrawn or removed arrives as deleted with a null value. Returns a
   * function that stops watching.
   */
  watch(type, keyValue, callback) {
    this.#type(type);
    return this.#addWatcher(this.#watchers, type, canonicalKey(keyValue), callback, () => {
      const cur = this.#objects.get(objectKey(type, canonicalKey(keyValue)));
      if (cur) this.#call(callback, cur);
    });
  }

  /** Like watch(), for every object of a type; the initial call covers live objects only. */
  watchAll(type, callback) {
    this.#type(type);
    return this.#addWatcher(this.#watchers, type, null, callback, () => {
      for (const snap of [...this.#objects.values()]) {
        if (snap.type === type && !snap.deleted) this.#call(callback, snap);
      }
    });
  }

  #addWatcher(registry, type, key, callback, initial) {
    let set = registry.get(type);
    if (!set) registry.set(type, (set = new Set()));
    const w = { key, callback };
    set.add(w);
    initial();
    return () => set.delete(w);
  }

  #notify(snap) {
    for (const w of [...(this.#watchers.get(snap.type) ?? [])]) {
      if (w.key === null || w.key === snap.key) this.#call(w.callback, snap);
    }
  }

  // ---------------------------------------------------------------- transitions

  /**
   * Starts a transition on an object: tentative updates flooded to every node, then committed
   * through the owner. Returns {id, type, key, update(attributes), commit(), abort()}:
   * - update(attributes) merges attributes into the tentative value (conflated per transition);
   *   it returns false once the transition has ended;
   * - commit() proposes the tentative value under this transition's id and resolves to an outcome
   *   (BROKEN_TRANSITION if it was broken or had expired);
   * - abort() ends it as ABORTED everywhere.
   */
  beginTransition(type, keyValue) {
    this.#type(type);
    const key = canonicalKey(keyValue);
    const k = objectKey(type, key);
    const cur = this.#objects.get(k);
    if (!cur || cur.deleted) throw new EntanglementError('NOT_FOUND', `${type}/${key} does not exist`);
    const id = randomUuid();
    const owner = cur.owner;
    return Object.freeze({
      id, type, key,
      update: (attributes) => this.#localTransitionUpdate(type, key, owner, id, attributes),
      commit: () => this.#commitTransition(type, key, id),
      abort: () => this.#endTransition(k, id, 'ABORTED', true),
    });
  }

  /**
   * Calls `callback(tentative)` for the transitions of one object: {type, key, transitionId,
   * origin, state, value}, where state is 'ACTIVE' for an update (value: the committed state with
   * the transition's attributes merged in) and then exactly one terminal state (value null).
   * Returns a function that stops watching.
   */
  tentative(type, keyValue, callback) {
    this.#type(type);
    const key = canonicalKey(keyValue);
    return this.#addWatcher(this.#tentativeWatchers, type, key, callback, () => {
      for (const slot of [...(this.#transitions.get(objectKey(type, key))?.values() ?? [])]) {
        this.#call(callback, this.#tentativeOf(slot, 'ACTIVE'));
      }
    });
  }

  /** Like tentative(), for every object of a type. */
  tentativeAll(type, callback) {
    this.#type(type);
    return this.#addWatcher(this.#tentativeWatchers, type, null, callback, () => {
      for (const slots of [...this.#transitions.values()]) {
        for (const slot of slots.values()) {
          if (slot.type === type) this.#call(callback, this.#tentativeOf(slot, 'ACTIVE'));
        }
      }
    });
  }

  #tentativeOf(slot, state) {
    let value = null;
    if (state === 'ACTIVE') {
      const cur = this.#objects.get(objectKey(slot.type, slot.key));
      value = slot.partial && cur && !cur.deleted ? { ...cur.value, ...slot.attributes } : slot.attributes;
    }
    return Object.freeze({
      type: slot.type, key: slot.key, transitionId: slot.id, origin: slot.origin, state, value,
    });
  }

  #emitTentative(slot, state) {
    const watchers = this.#tentativeWatchers.get(slot.type);
    if (!watchers?.size) return;
    const t = this.#tentativeOf(slot, state);
    for (const w of [...watchers]) {
      if (w.key === null || w.key === slot.key) this.#call(w.callback, t);
    }
  }

  /** The slot of a transition, created on first sight; at the owner, the newest one wins. */
  #transitionSlot(type, key, owner, id, origin) {
    const k = objectKey(type, key);
    let slots = this.#transitions.get(k);
    let slot = slots?.get(id);
    if (!slot) {
      if (owner === this.#ownerId && slots) {
        for (const other of [...slots.keys()]) this.#endTransition(k, other, 'BROKEN', true);
      }
      slots = this.#transitions.get(k);
      if (!slots) this.#transitions.set(k, (slots = new Map()));
      slot = { type, key, owner, id, origin, seq: 0, partial: true, attributes: {}, lastUpdate: 0, expiry: null };
      slots.set(id, slot);
      this.#transitionKeys.set(id, k);
    }
    return slot;
  }

  /** An update of the slot: it expires transitionTtlMs after the last one. */
  #touch(slot) {
    slot.lastUpdate = this.#clock.now();
    if (slot.expiry === null) this.#scheduleExpiry(slot, this.#opts.transitionTtlMs);
  }

  #scheduleExpiry(slot, ms) {
    slot.expiry = this.#clock.setTimeout(() => {
      slot.expiry = null;
      const idle = this.#clock.now() - slot.lastUpdate;
      const ttl = this.#opts.transitionTtlMs;
      if (idle >= ttl) this.#endTransition(objectKey(slot.type, slot.key), slot.id, 'EXPIRED', false);
      else this.#scheduleExpiry(slot, ttl - idle);
    }, ms);
  }

  #localTransitionUpdate(type, key, owner, id, attributes) {
    if (this.#endedTransitions.has(id) || this.#state === 'closed') return false;
    const slot = this.#transitionSlot(type, key, owner, id, this.#nodeId);
    slot.seq++;
    slot.attributes = { ...slot.attributes, ...attributes };
    this.#touch(slot);
    this.#emitTentative(slot, 'ACTIVE');
    if (this.#conn?.open) this.#queueTransition(this.#conn, slot);
    return true;
  }

  #commitTransition(type, key, id) {
    if (this.#state === 'closed') {
      return Promise.reject(new EntanglementError('NOT_CONNECTED', 'the client is closed'));
    }
    const ended = this.#endedTransitions.get(id);
    if (ended) return Promise.resolve(rejected('BROKEN_TRANSITION', `transition ${id} ${ended}`));
    const slot = this.#transitions.get(objectKey(type, key))?.get(id);
    if (!slot) return Promise.resolve(rejected('INVALID_OPERATION', `transition ${id} has no update to commit`));
    const cur = this.#objects.get(objectKey(type, key));
    if (!cur || cur.deleted) return Promise.resolve(rejected('NOT_FOUND', `${type}/${key} does not exist`));
    if (slot.owner === this.#ownerId) {
      // Our own object: no one to ask.
      const value = slot.partial ? { ...cur.value, ...slot.attributes } : slot.attributes;
      return Promise.resolve(committed(this.#commitLocal(type, key, value, false, id)));
    }
    return this.#request({
      type: 'PROPOSE', kind: 'UPDATE', objectType: type, key, owner: slot.owner, partial: slot.partial,
      attributes: slot.attributes, transitionId: id,
    });
  }

  /**
   * A TRANSITION is ignored (PROTOCOL.md §4.4) when its id has ended, is open on another object or
   * by another originator, or is this client's own; when it names another owner than the object's
   * or than its open transition's; or when it was judged on another committed version than the one
   * held.
   */
  #onTransition(conn, m) {
    if (!this.#types.has(m.objectType)) {
      this.#refuseUnasked(conn, 'UNKNOWN_TYPE', `unknown type ${m.objectType}`);
      return;
    }
    if (this.#endedTransitions.has(m.transitionId) || m.origin === this.#nodeId) return;
    const k = objectKey(m.objectType, m.key);
    const openOn = this.#transitionKeys.get(m.transitionId);
    if (openOn !== undefined && openOn !== k) return;
    const existing = this.#transitions.get(k)?.get(m.transitionId);
    if (existing && (existing.origin !== m.origin || existing.owner !== m.owner || existing.seq >= m.seq)) return;
    const base = this.#objects.get(k);
    if (base && (base.owner !== m.owner || base.epoch !== m.baseEpoch || base.serial !== m.baseSerial)) return;
    const slot = this.#transitionSlot(m.objectType, m.key, m.owner, m.transitionId, m.origin);
    slot.seq = m.seq;
    slot.partial = m.partial;
    slot.attributes = m.attributes;
    conn.tentativeSeen.set(slot.id, slot.seq);
    this.#touch(slot);
    this.#emitTentative(slot, 'ACTIVE');
  }

  /**
   * A TRANSITION_END is ignored (PROTOCOL.md §4.4) when it names another object than the
   * transition's, when it is about a transition without a slot here on an object not held, and
   * when it aborts (or expires) this client's own transition, which only this client ends so. The
   * peer speaks for every owner but this client's: on this client's own objects it cannot decide
   * (CONFIRMED, BROKEN, REJECTED), and it may abort only a transition whose updates it sent.
   */
  #onTransitionEnd(conn, m) {
    if (!TERMINAL_STATES.has(m.state)) {
      this.#refuse(conn, 'BAD_ENCODING', `unknown transition state ${m.state}`);
      return;
    }
    const k = objectKey(m.objectType, m.key);
    const openOn = this.#transitionKeys.get(m.transitionId);
    if (openOn === undefined ? !this.#objects.has(k) : openOn !== k) return;
    const slot = this.#transitions.get(k)?.get(m.transitionId);
    const aborts = m.state === 'ABORTED' || m.state === 'EXPIRED';
    if (aborts && slot?.origin === this.#nodeId) return;
    const owner = this.#objects.get(k)?.owner ?? slot?.owner;
    if (owner === this.#ownerId && (!aborts || !slot)) return;
    this.#endTransition(k, m.transitionId, m.state, false);
  }


  /** Ends a transition once; `send` tells the peer (every end but EXPIRED and the peer's own). */
  #endTransition(k, id, state, send) {
    if (this.#endedTransitions.has(id)) return;
    const openOn = this.#transitionKeys.get(id);
    if (openOn !== undefined && openOn !== k) return; // an end never records an id open elsewhere
    remember(this.#endedTransitions, id, state, ENDED_TRANSITIONS_REMEMBERED);
    const slots = this.#transitions.get(k);
    const slot = slots?.get(id);
    if (slot) {
      slots.delete(id);
      this.#transitionKeys.delete(id);
      if (slots.size === 0) this.#transitions.delete(k);
      this.#clock.clearTimeout(slot.expiry);
      slot.expiry = null;
      this.#emitTentative(slot, state);
    }
    const conn = this.#conn;
    if (conn) conn.tentativeSeen.delete(id);
    if (send && conn?.open) {
      const sep = k.indexOf('\u0000');
      this.#send(conn, { type: 'TRANSITION_END', objectType: k.slice(0, sep), key: k.slice(sep + 1), transitionId: id, state });
    }
  }

  /** At the owner: a commit confirms the transition it names and breaks every other one. */
  #settleTransitions(k, confirms) {
    for (const id of [...(this.#transitions.get(k)?.keys() ?? [])]) {
      this.#endTransition(k, id, id === confirms ? 'CONFIRMED' : 'BROKEN', true);
    }
    if (confirms) this.#endTransition(k, confirms, 'CONFIRMED', true);
  }
}
