// Test doubles: a WebSocket the test drives by hand and a clock whose time only moves on request.
// Kept out of test/ so that `node --test` does not count it as a test file.

import { encodeFrame, decodeFrame } from '../src/codec.js';
import { EntanglementClient } from '../src/client.js';

/** A WebSocket class whose instances land in `sockets`; the test opens, feeds and drops them. */
export function fakeWebSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.bufferedAmount = 0;
      /** Decoded messages written by the client, in order. */
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(decodeFrame(data));
    }

    close(code) {
      this.readyState = 3;
      this.closedWith = code;
    }

    // ---- driven by the test
    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    /** Delivers one message from the peer, framed as a real peer would. */
    receive(message) {
      this.onmessage?.({ data: encodeFrame(message).buffer });
    }

    receiveRaw(data) {
      this.onmessage?.({ data });
    }

    /** The network drops the connection. */
    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code, reason: '' });
    }

    /** Sent messages of one type. */
    sentOf(type) {
      return this.sent.filter((m) => m.type === type);
    }

    /** Forgets what was sent so far. */
    clearSent() {
      this.sent.length = 0;
    }
  }
  return { WebSocket: FakeWebSocket, sockets };
}

/** A clock for the client's `clock` option; timers run only inside advance(). */
export function fakeClock(start = 1_700_000_000_000) {
  let now = start;
  let nextId = 1;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    /** How many timers are set and have neither run nor been cleared. */
    pending: () => timers.size,
    /** Moves time forward by `ms`, running every timer due on the way, in time order. */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next = null;
        for (const [id, t] of timers) {
          if (t.at <= end && (next === null || t.at < next[1].at)) next = [id, t];
        }
        if (next === null) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
    },
  };
}

/** Lets queued microtasks (the client's writes) and promise callbacks run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

export const CURSOR = { key: (c) => c.id };

/** A client on fake sockets and a fake clock, with its sockets and clock. */
export function newClient(options = {}) {
  const ws = fakeWebSockets();
  const clock = options.clock ?? fakeClock();
  const client = new EntanglementClient({
    url: 'ws://peer.test/sync',
    nodeId: 'js-node',
    ownerId: 'owner-js',
    types: { Cursor: CURSOR },
    WebSocket: ws.WebSocket,
    clock,
    random: () => 0.5,
    ...options,
  });
  return { client, clock, sockets: ws.sockets };
}

/** The peer's side of the opening: HELLO, ROUTES and CATCH_UP (holding nothing by default). */
export function peerHandshake(socket, { nodeId = 'java', owners = ['owner-java'], holds = [] } = {}) {
  socket.receive({
    type: 'HELLO', protocolVersion: 1, nodeId, owners: owners.map((owner) => ({ owner, epoch: 7 })), maxFrame: 0,
  });
  socket.receive({ type: 'ROUTES', hops: Object.fromEntries(owners.map((o) => [o, 0])) });
  socket.receive({ type: 'CATCH_UP', holds });
}

/** Opens the client's current socket and completes the handshake; returns the socket. */
export async function connected(client, sockets, peer) {
  client.connect();
  const socket = sockets.at(-1);
  socket.open();
  peerHandshake(socket, peer);
  await settle();
  return socket;
}

/** A SYNC from the peer. */
export function sync(key, attributes, { owner = 'owner-java', epoch = 7, serial = 1, deleted = false, type = 'Cursor' } = {}) {
  return {
    type: 'SYNC', objectType: type, key, owner, epoch, serial, committedAt: 1_700_000_000_000, deleted,
    attributes: deleted ? {} : attributes,
  };
}
