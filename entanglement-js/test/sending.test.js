import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newClient, connected, peerHandshake, settle } from '../test-support/fakes.js';

/** Makes every write stay in `socket.bufferedAmount` until the test empties it. */
function holdWrites(socket) {
  const send = socket.send.bind(socket);
  socket.send = (data) => {
    send(data);
    socket.bufferedAmount += data.length;
  };
}

test('conflation: 100 publishes of one key while the socket is congested leave as one frame with the last state', async () => {
  const { client, clock, sockets } = newClient({ highWaterMark: 1000, drainIntervalMs: 10 });
  const socket = await connected(client, sockets);
  socket.clearSent();
  socket.bufferedAmount = 5000;
  for (let i = 0; i < 100; i++) {
    client.publish('Cursor', { id: 'me', x: i });
    await settle(); // every publish in its own task: each one tries to write
  }
  clock.advance(50);
  assert.deepEqual(socket.sent, [], 'nothing is written above the threshold');
  socket.bufferedAmount = 0;
  clock.advance(10);
  assert.equal(socket.sent.length, 1);
  assert.deepEqual(socket.sent[0], {
    type: 'SYNC', objectType: 'Cursor', key: 'me', owner: 'owner-js', epoch: client.epoch, serial: 100,
    committedAt: clock.now() - 60, deleted: false, attributes: { id: 'me', x: 99 },
  });
});

test('conflation per key: congested publishes of many keys keep one entry per key, in first-change order', async () => {
  const { client, clock, sockets } = newClient({ highWaterMark: 1000 });
  const socket = await connected(client, sockets);
  socket.clearSent();
  socket.bufferedAmount = 5000;
  for (let i = 0; i < 300; i++) client.publish('Cursor', { id: `k${i % 3}`, x: i });
  await settle();
  socket.bufferedAmount = 0;
  clock.advance(10);
  assert.deepEqual(socket.sent.map((m) => [m.key, m.attributes.x]), [['k0', 297], ['k1', 298], ['k2', 299]]);
});

test('changes made in one task are written once, at its end', async () => {
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  socket.clearSent();
  for (let i = 0; i < 100; i++) client.publish('Cursor', { id: 'me', x: i });
  assert.deepEqual(socket.sent, []);
  await settle();
  assert.deepEqual(socket.sent.map((m) => m.attributes.x), [99]);
});

test('flow control: writing stops at the threshold and resumes when the socket drains', async () => {
  const { client, clock, sockets } = newClient({ highWaterMark: 100, drainIntervalMs: 10 });
  const socket = await connected(client, sockets);
  socket.clearSent();
  holdWrites(socket);
  for (let i = 0; i < 10; i++) client.publish('Cursor', { id: `k${i}`, x: i });
  await settle();
  const firstBurst = socket.sent.length;
  assert.ok(firstBurst >= 1 && firstBurst < 10, `wrote ${firstBurst} frames before the threshold`);
  clock.advance(100);
  assert.equal(socket.sent.length, firstBurst, 'still congested');
  socket.bufferedAmount = 0;
  clock.advance(10);
  assert.ok(socket.sent.length > firstBurst);
  while (socket.sent.length < 10) {
    socket.bufferedAmount = 0;
    clock.advance(10);
  }
  assert.deepEqual(socket.sent.map((m) => m.key), ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9']);
});

test('reconnect: the peer catch-up gets every owned object (tombstones too), then a full WATERMARK', async () => {
  const { client, clock, sockets } = newClient();
  let socket = await connected(client, sockets);
  client.publish('Cursor', { id: 'a', x: 1 });
  client.publish('Cursor', { id: 'b', x: 2 });
  await client.delete('Cursor', 'b');
  await settle();
  socket.drop();
  client.publish('Cursor', { id: 'a', x: 3 }); // while disconnected
  clock.advance(1000);
  socket = sockets.at(-1);
  socket.open();
  peerHandshake(socket, { holds: [] }); // a peer that holds nothing of ours
  await settle();
  assert.deepEqual(socket.sent.map((m) => m.type), ['HELLO', 'ROUTES', 'CATCH_UP', 'SYNC', 'SYNC', 'WATERMARK']);
  const [, , , a, b, wm] = socket.sent;
  assert.deepEqual([a.key, a.serial, a.attributes], ['a', 4, { id: 'a', x: 3 }]);
  assert.deepEqual([b.key, b.serial, b.deleted, b.attributes], ['b', 3, true, {}]);
  assert.deepEqual(wm, { type: 'WATERMARK', owner: 'owner-js', epoch: client.epoch, serial: 4, full: true });
});

test('reconnect: a peer that holds our epoch up to a version gets only what is newer', async () => {
  const { client, clock, sockets } = newClient();
  let socket = await connected(client, sockets);
  client.publish('Cursor', { id: 'a', x: 1 }); // serial 1
  client.publish('Cursor', { id: 'b', x: 1 }); // serial 2
  await settle();
  socket.drop();
  client.publish('Cursor', { id: 'b', x: 2 }); // serial 3
  clock.advance(1000);
  socket = sockets.at(-1);
  socket.open();
  peerHandshake(socket, { holds: [{ owner: 'owner-js', epoch: client.epoch, serial: 2 }] });
  await settle();
  assert.deepEqual(socket.sent.slice(3).map((m) => [m.type, m.key ?? m.serial, m.full]),
    [['SYNC', 'b', undefined], ['WATERMARK', 3, false]]);
});

test('reconnect: CATCH_UP names the watermarks received, so the peer sends only what was missed', async () => {
  const { client, clock, sockets } = newClient();
  let socket = await connected(client, sockets);
  socket.receive({ type: 'WATERMARK', owner: 'owner-java', epoch: 7, serial: 12, full: false });
  socket.drop();
  clock.advance(1000);
  socket = sockets.at(-1);
  socket.open();
  await settle();
  assert.deepEqual(socket.sentOf('CATCH_UP')[0].holds, [{ owner: 'owner-java', epoch: 7, serial: 12 }]);
});

test('events on a congested socket: the newest maxQueuedEvents wait, in order; the oldest are dropped and counted', async () => {
  const { client, clock, sockets } = newClient({
    highWaterMark: 1000, drainIntervalMs: 10, maxQueuedEvents: 4, types: { Cursor: { key: (c) => c.id }, Click: { unique: true } },
  });
  const socket = await connected(client, sockets);
  socket.clearSent();
  socket.bufferedAmount = 5000;
  for (let i = 0; i < 10; i++) client.publish('Click', { n: i });
  client.publish('Cursor', { id: 'me', x: 1 }); // states are not events: never dropped
  await settle();
  assert.equal(client.eventsDropped, 6);
  socket.bufferedAmount = 0;
  clock.advance(10);
  assert.deepEqual(socket.sentOf('SYNC').map((m) => m.attributes.n ?? m.key), [6, 7, 8, 9, 'me']);
  // The socket has room again (this fake's buffer never fills up): nothing is dropped, even while
  // the drain timer armed when it was congested has not fired yet.
  socket.bufferedAmount = 5000;
  client.publish('Click', { n: 10 });
  await settle();
  socket.bufferedAmount = 0;
  for (let i = 11; i < 20; i++) client.publish('Click', { n: i });
  await settle();
  clock.advance(10);
  assert.equal(client.eventsDropped, 6);
  assert.equal(socket.sentOf('SYNC').length, 15);
});

test('a burst of events that fills the socket: the rest beyond maxQueuedEvents is dropped when it congests', async () => {
  const { client, clock, sockets } = newClient({
    highWaterMark: 100, drainIntervalMs: 10, maxQueuedEvents: 3, types: { Click: { unique: true } },
  });
  const socket = await connected(client, sockets);
  socket.clearSent();
  holdWrites(socket);
  for (let i = 0; i < 20; i++) client.publish('Click', { n: i });
  await settle();
  const written = socket.sentOf('SYNC').length;
  assert.ok(written >= 1 && written < 20, `wrote ${written} before the threshold`);
  assert.equal(client.eventsDropped, 20 - written - 3);
  socket.bufferedAmount = 0;
  clock.advance(10);
  for (let i = 0; i < 10 && socket.bufferedAmount >= 100; i++) {
    socket.bufferedAmount = 0;
    clock.advance(10);
  }
  assert.deepEqual(socket.sentOf('SYNC').slice(written).map((m) => m.attributes.n), [17, 18, 19]);
});

test('a closing socket takes no more writes: events wait for it at most maxQueuedEvents', async () => {
  const { client, sockets } = newClient({ maxQueuedEvents: 3, types: { Click: { unique: true } } });
  const socket = await connected(client, sockets);
  socket.readyState = 2; // CLOSING: its close event has not come yet
  for (let i = 0; i < 100; i++) client.publish('Click', { n: i });
  await settle();
  assert.equal(client.eventsDropped, 97);
});

test('a congested socket keeps one PONG and one keepalive PING, the newest, and one refusal per code, however many PINGs and refused states arrive', async () => {
  const { client, clock, sockets } = newClient({ highWaterMark: 1000, drainIntervalMs: 10 });
  const socket = await connected(client, sockets);
  socket.clearSent();
  socket.bufferedAmount = 5000;
  for (let i = 0; i < 100; i++) {
    socket.receive({ type: 'PING', nonce: i });
    socket.receive({
      type: 'SYNC', objectType: 'Nope', key: `k${i}`, owner: 'owner-x', epoch: 1, serial: 1,
      committedAt: 0, deleted: false, attributes: {},
    });
    socket.receive({ type: 'OWNER_REMOVED', owner: 'owner-js', epoch: 1 }); // its own: BAD_OWNER
  }
  await settle();
  clock.advance(2 * 15000 + 5); // two keepalive PINGs, the second replacing the first
  socket.bufferedAmount = 0;
  clock.advance(10);
  assert.equal(socket.sentOf('PING').length, 1);
  assert.deepEqual(socket.sent.filter((m) => m.type !== 'PING'), [
    { type: 'PONG', nonce: 99 },
    { type: 'ERROR', inReplyTo: 0, code: 'UNKNOWN_TYPE', message: 'unknown type Nope' },
    { type: 'ERROR', inReplyTo: 0, code: 'BAD_OWNER', message: 'owner-js is local to ' + client.nodeId },
  ]);
});

test('maxQueuedEvents must be a positive integer', () => {
  assert.throws(() => newClient({ maxQueuedEvents: 0 }), /maxQueuedEvents/);
});

test('a peer holding a later epoch of the owner (the clock went back since an earlier start): the client moves above it and resends its objects', async () => {
  const { client, clock, sockets } = newClient();
  const before = client.epoch;
  client.publish('Cursor', { id: 'mine', x: 1 });
  client.publish('Cursor', { id: 'gone', x: 1 });
  await client.delete('Cursor', 'gone');
  const seen = [];
  client.watch('Cursor', 'mine', (s) => seen.push([s.epoch, s.serial]));
  const later = clock.now() + 60_000; // an earlier start's epoch, a minute ahead of this clock
  const socket = await connected(client, sockets, { holds: [{ owner: 'owner-js', epoch: later, serial: 40 }] });
  assert.equal(client.epoch, later + 1);
  assert.deepEqual(seen, [[before, 1], [later + 1, 1]], 'watchers see the new version');
  assert.deepEqual(socket.sentOf('SYNC').map((m) => [m.key, m.epoch, m.serial, m.deleted]),
    [['mine', later + 1, 1, false], ['gone', later + 1, 2, true]]);
  assert.deepEqual(socket.sentOf('WATERMARK').map((m) => [m.epoch, m.serial, m.full]), [[later + 1, 2, true]]);
  assert.equal(client.publish('Cursor', { id: 'mine', x: 2 }).epoch, later + 1);
  // An earlier epoch held by the peer changes nothing.
  const { client: other, sockets: otherSockets } = newClient();
  await connected(other, otherSockets, { holds: [{ owner: 'owner-js', epoch: 5, serial: 1 }] });
  assert.equal(other.epoch, clock.now());
});
