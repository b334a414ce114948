import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../src/backoff.js';
import { EntanglementError } from '../src/client.js';
import { newClient, peerHandshake, connected, settle, sync } from '../test-support/fakes.js';

test('the opening: HELLO with the owner and its epoch, ROUTES, CATCH_UP; connected on the peer HELLO', async () => {
  const { client, sockets } = newClient({ epoch: 42 });
  const events = [];
  client.on('connecting', (e) => events.push(['connecting', e.attempt]));
  client.on('connected', (e) => events.push(['connected', e.peer]));
  assert.equal(client.state, 'idle');
  client.connect();
  assert.equal(client.state, 'connecting');
  const socket = sockets[0];
  assert.equal(socket.url, 'ws://peer.test/sync');
  socket.open();
  await settle();
  assert.deepEqual(socket.sent.map((m) => m.type), ['HELLO', 'ROUTES', 'CATCH_UP']);
  assert.deepEqual(socket.sent[0], {
    type: 'HELLO', protocolVersion: 1, nodeId: 'js-node', owners: [{ owner: 'owner-js', epoch: 42 }], maxFrame: 0,
  });
  assert.deepEqual(socket.sent[1].hops, { 'owner-js': 0 });
  assert.deepEqual(socket.sent[2].holds, []);
  assert.equal(client.state, 'connecting', 'not before the peer HELLO');
  peerHandshake(socket);
  assert.equal(client.state, 'connected');
  assert.deepEqual(events, [['connecting', 1], ['connected', 'java']]);
});

test('the default epoch is the start time', () => {
  const { client, clock } = newClient();
  assert.equal(client.epoch, clock.now());
});

test('backoff: exponential ceiling with full jitter, capped', () => {
  const opts = { initialMs: 250, maxMs: 10_000 };
  assert.equal(backoffDelay(0, opts, () => 0.999), 249);
  assert.equal(backoffDelay(3, opts, () => 0.5), 1000);
  assert.equal(backoffDelay(10, opts, () => 0.5), 5000, 'capped at maxMs');
  assert.equal(backoffDelay(2000, opts, () => 0.5), 5000, 'no overflow for long outages');
  assert.equal(backoffDelay(5, opts, () => 0), 0);
});

test('reconnect: failed attempts back off exponentially, a success resets the backoff', async () => {
  const { client, clock, sockets } = newClient({ backoff: { initialMs: 100, maxMs: 1000 } });
  const delays = [];
  const attempts = [];
  client.on('disconnected', (e) => delays.push(e.retryInMs));
  client.on('connecting', (e) => attempts.push(e.attempt));
  await connected(client, sockets);
  sockets[0].drop();
  assert.equal(client.state, 'backing-off');
  assert.deepEqual(delays, [50]); // random() = 0.5 of 100
  clock.advance(49);
  assert.equal(sockets.length, 1, 'not before the delay');
  clock.advance(1);
  assert.equal(sockets.length, 2);
  assert.equal(client.state, 'connecting');
  for (const expected of [100, 200, 400, 500, 500]) {
    sockets.at(-1).drop(); // refused before opening
    assert.equal(delays.at(-1), expected);
    clock.advance(expected);
  }
  const socket = sockets.at(-1);
  socket.open();
  peerHandshake(socket);
  assert.equal(client.state, 'connected');
  socket.drop();
  assert.equal(delays.at(-1), 50, 'a connection that reached HELLO starts the backoff again');
  clock.advance(50);
  assert.deepEqual(attempts, [1, 1, 2, 3, 4, 5, 6, 1], 'attempts count from 1 after each connection');
});

test('a pending proposal fails when the connection drops, and the client reconnects', async () => {
  const { client, clock, sockets } = newClient();
  const socket = await connected(client, sockets);
  socket.receive(sync('java', { id: 'java', x: 1 }));
  const outcome = client.propose('Cursor', 'java', { x: 2 });
  await settle();
  assert.equal(socket.sentOf('PROPOSE').length, 1);
  socket.drop();
  await assert.rejects(outcome, (e) => e instanceof EntanglementError && e.code === 'NOT_CONNECTED');
  clock.advance(1000);
  assert.equal(sockets.length, 2);
  await assert.rejects(client.propose('Cursor', 'java', { x: 3 }), (e) => e.code === 'NOT_CONNECTED',
    'before the new socket opens');
});

test('no HELLO in time: the client gives up on the socket and backs off', async () => {
  const { client, clock, sockets } = newClient({ handshakeTimeoutMs: 1000 });
  const reasons = [];
  client.on('disconnected', (e) => reasons.push(e.reason));
  client.connect();
  sockets[0].open();
  clock.advance(999);
  assert.equal(client.state, 'connecting');
  clock.advance(1);
  assert.equal(client.state, 'backing-off');
  assert.match(reasons[0], /no HELLO/);
  assert.equal(sockets[0].sentOf('ERROR')[0].code, 'TIMEOUT');
  assert.equal(sockets[0].closedWith, 1000);
});

test('keepalive: PING every interval, PONG for every PING, a silent peer is dropped', async () => {
  const { client, clock, sockets } = newClient({ keepAliveMs: 100 });
  const socket = await connected(client, sockets);
  socket.receive({ type: 'PING', nonce: 1234567890123 });
  await settle();
  assert.deepEqual(socket.sentOf('PONG'), [{ type: 'PONG', nonce: 1234567890123 }]);
  clock.advance(100);
  await settle();
  assert.equal(socket.sentOf('PING').length, 1);
  clock.advance(199);
  assert.equal(client.state, 'connected');
  clock.advance(1);
  assert.equal(client.state, 'backing-off', 'nothing received for three intervals');
});

test('protocol errors: a message before HELLO, a text message, a bad frame', async () => {
  for (const [what, deliver, code] of [
    ['before HELLO', (s) => s.receive(sync('x', { id: 'x' })), 'INVALID_OPERATION'],
    ['text', (s) => s.receiveRaw('hello'), 'BAD_ENCODING'],
    ['garbage', (s) => s.receiveRaw(new Uint8Array([0, 0, 0, 1, 0, 0, 0, 0, 99]).buffer), 'BAD_ENCODING'],
    ['other version', (s) => s.receive({ type: 'HELLO', protocolVersion: 2, nodeId: 'j', owners: [], maxFrame: 0 }),
      'INVALID_OPERATION'],
  ]) {
    const { client, sockets } = newClient();
    client.connect();
    const socket = sockets[0];
    socket.open();
    deliver(socket);
    assert.equal(socket.sentOf('ERROR')[0]?.code, code, what);
    assert.equal(socket.sentOf('ERROR')[0].inReplyTo, 0);
    assert.equal(client.state, 'backing-off', what);
    assert.equal(socket.closedWith, 1000);
  }
});

test('an ERROR before HELLO is a refusal: not answered, the client backs off', async () => {
  const { client, sockets } = newClient();
  const reasons = [];
  client.on('disconnected', (e) => reasons.push(e.reason));
  client.connect();
  const socket = sockets[0];
  socket.open();
  socket.receive({ type: 'ERROR', inReplyTo: 0, code: 'UNAUTHORIZED', message: 'refused' });
  assert.deepEqual(socket.sentOf('ERROR'), []);
  assert.equal(client.state, 'backing-off');
  assert.deepEqual(reasons, ['refused: UNAUTHORIZED: refused']);
});

test('GOAWAY closes the connection and the client reconnects later', async () => {
  const { client, sockets } = newClient();
  const reasons = [];
  client.on('disconnected', (e) => reasons.push(e.reason));
  const socket = await connected(client, sockets);
  socket.receive({ type: 'GOAWAY', code: 'INVALID_OPERATION', message: 'shutting down' });
  assert.equal(client.state, 'backing-off');
  assert.deepEqual(reasons, ['GOAWAY INVALID_OPERATION: shutting down']);
});

test('an ERROR that answers no request is reported as an error event', async () => {
  const { client, sockets } = newClient();
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const socket = await connected(client, sockets);
  socket.receive({ type: 'ERROR', inReplyTo: 0, code: 'UNAUTHORIZED', message: 'not yours' });
  assert.deepEqual(errors, [{ code: 'UNAUTHORIZED', message: 'not yours' }]);
  assert.equal(client.state, 'connected');
});

test('close(): what is queued goes out first, requests excepted, then GOAWAY, even on a congested socket', async () => {
  const { client, sockets } = newClient({ highWaterMark: 1000 });
  const socket = await connected(client, sockets);
  socket.receive(sync('java', { id: 'java', x: 1 }));
  await settle();
  socket.clearSent();
  socket.bufferedAmount = 5000;
  client.publish('Cursor', { id: 'mine', x: 1 });
  client.publish('Cursor', { id: 'mine', x: 2 });
  const outcome = client.propose('Cursor', 'java', { x: 2 });
  await settle();
  assert.deepEqual(socket.sent, [], 'congested: nothing written yet');
  client.close();
  await assert.rejects(outcome, (e) => e.code === 'NOT_CONNECTED');
  assert.deepEqual(socket.sent.map((m) => [m.type, m.key ?? m.code, m.attributes?.x]), [
    ['SYNC', 'mine', 2],
    ['GOAWAY', 'SHUTDOWN', undefined],
  ]);
  assert.equal(socket.closedWith, 1000);
});

test('close(): pending requests fail, no reconnection, the state is final', async () => {
  const { client, clock, sockets } = newClient();
  const events = [];
  client.on('disconnected', (e) => events.push(e));
  const socket = await connected(client, sockets);
  socket.receive(sync('java', { id: 'java', x: 1 }));
  const outcome = client.propose('Cursor', 'java', { x: 2 });
  client.close();
  await assert.rejects(outcome, (e) => e.code === 'NOT_CONNECTED');
  assert.equal(client.state, 'closed');
  assert.deepEqual(events, [{ reason: 'closed by the client', retryInMs: null }]);
  assert.equal(socket.closedWith, 1000);
  clock.advance(60_000);
  assert.equal(sockets.length, 1);
  assert.throws(() => client.connect(), /closed/);
});
