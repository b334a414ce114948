import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EntanglementError } from '../src/client.js';
import { newClient, connected, settle, sync } from '../test-support/fakes.js';

async function withJavaCursor(options) {
  const c = newClient(options);
  const socket = await connected(c.client, c.sockets);
  socket.receive(sync('java', { id: 'java', x: 1, y: 1 }));
  return { ...c, socket };
}

test('propose: a PROPOSE to the owner; RESPONSE resolves committed, ERROR resolves rejected (a value)', async () => {
  const { client, socket } = await withJavaCursor();
  const first = client.propose('Cursor', 'java', { x: 5 });
  const second = client.propose('Cursor', 'java', { x: -1 });
  await settle();
  const [p1, p2] = socket.sentOf('PROPOSE');
  assert.deepEqual(p1, {
    type: 'PROPOSE', requestId: 1, kind: 'UPDATE', objectType: 'Cursor', key: 'java', owner: 'owner-java',
    partial: true, attributes: { x: 5 }, transitionId: null, hops: 0,
  });
  assert.equal(p2.requestId, 2);
  socket.receive({ type: 'ERROR', inReplyTo: 2, code: 'UNAUTHORIZED', message: 'negative x' });
  socket.receive({ type: 'RESPONSE', inReplyTo: 1, state: { ...sync('java', { id: 'java', x: 5, y: 1 }, { serial: 2 }) } });
  const ok = await first;
  assert.equal(ok.committed, true);
  assert.deepEqual([ok.state.serial, ok.state.value], [2, { id: 'java', x: 5, y: 1 }]);
  assert.equal(client.get('Cursor', 'java').serial, 2, 'the committed state is applied');
  assert.deepEqual(await second, { committed: false, code: 'UNAUTHORIZED', message: 'negative x' });
});

test('an ERROR code this client does not know reads as INVALID_OPERATION (PROTOCOL.md 5)', async () => {
  const { client, socket } = await withJavaCursor();
  const errors = [];
  client.on('error', (e) => errors.push(e));
  const refused = client.propose('Cursor', 'java', { x: 5 });
  await settle();
  socket.receive({ type: 'ERROR', inReplyTo: socket.sentOf('PROPOSE')[0].requestId, code: 'NEWER_CODE', message: 'no' });
  assert.deepEqual(await refused, { committed: false, code: 'INVALID_OPERATION', message: 'no' });
  socket.receive({ type: 'ERROR', inReplyTo: 0, code: 'ALSO_NEW', message: 'vetoed' });
  socket.receive({ type: 'ERROR', inReplyTo: 0, code: 'WITHHELD', message: 'hidden' });
  assert.deepEqual(errors, [
    { code: 'INVALID_OPERATION', message: 'vetoed' }, { code: 'WITHHELD', message: 'hidden' }]);
});

test('propose: an unknown object is NOT_FOUND as a value; NO_RESPONSE and timeouts are failures', async () => {
  const { client, clock, socket } = await withJavaCursor({ requestTimeoutMs: 1000 });
  assert.equal((await client.propose('Cursor', 'nobody', { x: 1 })).code, 'NOT_FOUND');
  const lost = client.propose('Cursor', 'java', { x: 2 });
  await settle();
  socket.receive({ type: 'NO_RESPONSE', inReplyTo: socket.sentOf('PROPOSE')[0].requestId });
  await assert.rejects(lost, (e) => e instanceof EntanglementError && e.code === 'NO_RESPONSE');
  const slow = client.propose('Cursor', 'java', { x: 3 });
  clock.advance(1000);
  await assert.rejects(slow, (e) => e.code === 'TIMEOUT');
});

test('delete: an owned object becomes a tombstone at once; another owner\'s gets a DELETE request', async () => {
  const { client, socket } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1 });
  const mine = await client.delete('Cursor', 'mine');
  assert.deepEqual([mine.committed, mine.state.deleted, mine.state.value, mine.state.serial], [true, true, null, 2]);
  const theirs = client.delete('Cursor', 'java');
  await settle();
  const request = socket.sentOf('PROPOSE')[0];
  assert.equal(request.kind, 'DELETE');
  socket.receive({ type: 'RESPONSE', inReplyTo: request.requestId, state: sync('java', {}, { serial: 2, deleted: true }) });
  assert.equal((await theirs).state.deleted, true);
  assert.equal(client.get('Cursor', 'java').deleted, true);
});

/** A peer proposal for this client's object 'mine', answered on `socket`. */
function proposeToMe(socket, requestId, attributes, extra = {}) {
  socket.receive({
    type: 'PROPOSE', requestId, kind: 'UPDATE', objectType: 'Cursor', key: 'mine', owner: 'owner-js',
    partial: true, attributes, transitionId: null, hops: 1, ...extra,
  });
}

test('answering PROPOSE: the default decision commits and answers RESPONSE with the committed state', async () => {
  const { client, socket } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1, y: 1 });
  await settle();
  socket.clearSent();
  proposeToMe(socket, 41, { x: 2 });
  await settle();
  assert.deepEqual(socket.sent.map((m) => m.type), ['RESPONSE']);
  const [r] = socket.sent;
  assert.equal(r.inReplyTo, 41);
  assert.deepEqual(r.state, {
    objectType: 'Cursor', key: 'mine', owner: 'owner-js', epoch: client.epoch, serial: 2,
    committedAt: client.get('Cursor', 'mine').committedAt, deleted: false, attributes: { id: 'mine', x: 2, y: 1 },
  });
  assert.equal(client.get('Cursor', 'mine').value.x, 2);
});

test('answering PROPOSE: the RESPONSE stands in for the SYNC of its version on the link (PROTOCOL.md 4.3)', async () => {
  const { client, socket } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1 });
  await settle();
  socket.clearSent();
  proposeToMe(socket, 1, { x: 2 });
  await settle();
  assert.deepEqual(socket.sent.map((m) => [m.type, m.serial ?? m.state.serial]), [['RESPONSE', 2]],
    'no SYNC of version 2 besides the RESPONSE that carries it');
  proposeToMe(socket, 2, { x: 3 });
  client.publish('Cursor', { id: 'mine', x: 4 }); // a newer version in the same task
  await settle();
  assert.deepEqual(socket.sent.slice(1).map((m) => [m.type, m.serial ?? m.state.serial]), [['SYNC', 4], ['RESPONSE', 3]],
    'a version no RESPONSE carries still leaves as a SYNC');
  await client.propose('Cursor', 'mine', { x: 5 }); // a local proposal: no RESPONSE on the link
  await settle();
  assert.deepEqual(socket.sentOf('SYNC').map((m) => m.serial), [4, 5]);
});

test('answering PROPOSE: the decide hook sees the proposal and may modify, reject or answer later', async () => {
  const proposals = [];
  let release;
  const { client, socket } = await withJavaCursor({
    decide: (p) => {
      proposals.push(p);
      if (p.proposed.x < 0) return { reject: 'UNAUTHORIZED', message: 'no negative x' };
      if (p.proposed.x === 100) return false;
      if (p.proposed.x === 50) return new Promise((resolve) => { release = resolve; });
      return { commit: { ...p.proposed, y: 99 } };
    },
  });
  client.publish('Cursor', { id: 'mine', x: 1, y: 1 });
  proposeToMe(socket, 1, { x: 7 });
  proposeToMe(socket, 2, { x: -3 });
  proposeToMe(socket, 3, { x: 100 });
  proposeToMe(socket, 4, { x: 50 });
  await settle();
  assert.deepEqual(proposals[0], {
    kind: 'UPDATE', type: 'Cursor', key: 'mine', current: proposals[0].current, proposed: { id: 'mine', x: 7, y: 1 },
    transitionId: null, from: 'java',
  });
  assert.equal(proposals[0].current.serial, 1);
  const answers = () => socket.sent.filter((m) => m.type === 'RESPONSE' || m.type === 'ERROR');
  assert.deepEqual(answers().map((m) => [m.type, m.inReplyTo, m.code ?? m.state.attributes.y]),
    [['RESPONSE', 1, 99], ['ERROR', 2, 'UNAUTHORIZED'], ['ERROR', 3, 'UNAUTHORIZED']]);
  assert.equal(socket.sentOf('ERROR')[0].message, 'no negative x');
  release({ commit: { id: 'mine', x: 51, y: 0 } });
  await settle();
  assert.deepEqual(answers().at(-1).state.attributes, { id: 'mine', x: 51, y: 0 });
  assert.equal(client.get('Cursor', 'mine').serial, 3);
});

test('answering PROPOSE: undecided proposals time out; checks come before the hook', async () => {
  let calls = 0;
  const { client, clock, socket } = await withJavaCursor({
    decisionTimeoutMs: 500,
    decide: () => { calls++; return new Promise(() => {}); },
  });
  client.publish('Cursor', { id: 'mine', x: 1 });
  proposeToMe(socket, 1, { x: 2 });
  proposeToMe(socket, 2, { x: 2 }, { key: 'missing' });
  proposeToMe(socket, 3, { id: 'other' });
  proposeToMe(socket, 4, { x: 2 }, { owner: 'owner-elsewhere' });
  proposeToMe(socket, 5, { x: 2 }, { objectType: 'Unknown' });
  await settle();
  assert.equal(calls, 1);
  clock.advance(500);
  await settle();
  const answers = socket.sent.filter((m) => ['ERROR', 'NO_RESPONSE'].includes(m.type))
    .map((m) => [m.inReplyTo, m.code ?? m.type]).sort((a, b) => a[0] - b[0]);
  assert.deepEqual(answers, [[1, 'TIMEOUT'], [2, 'NOT_FOUND'], [3, 'INVALID_OPERATION'], [4, 'NO_RESPONSE'],
    [5, 'UNKNOWN_TYPE']]);
});

test('answering a DELETE request and a CREATE request', async () => {
  const kinds = [];
  const { client, socket } = await withJavaCursor({ decide: (p) => { kinds.push(p.kind); } });
  client.publish('Cursor', { id: 'mine', x: 1 });
  proposeToMe(socket, 1, {}, { kind: 'DELETE' });
  socket.receive({ type: 'CREATE', requestId: 2, objectType: 'Cursor', owner: 'owner-js', attributes: { id: 'new', x: 3 }, hops: 1 });
  socket.receive({ type: 'CREATE', requestId: 3, objectType: 'Cursor', owner: 'owner-js', attributes: { id: 'new', x: 4 }, hops: 1 });
  await settle();
  assert.deepEqual(kinds, ['DELETE', 'CREATE']);
  const answers = socket.sent.filter((m) => m.type === 'RESPONSE' || m.type === 'ERROR');
  assert.deepEqual(answers.map((m) => [m.inReplyTo, m.code ?? (m.state.deleted ? 'deleted' : m.state.key)]),
    [[1, 'deleted'], [2, 'new'], [3, 'INVALID_OPERATION']]);
  assert.equal(client.get('Cursor', 'new').owner, 'owner-js');
});

test('a local proposal on an owned object goes through the decide hook', async () => {
  const { client } = newClient({ decide: (p) => (p.proposed.x > 10 ? { reject: 'UNAUTHORIZED', message: 'too far' } : true) });
  client.publish('Cursor', { id: 'mine', x: 1 });
  assert.equal((await client.propose('Cursor', 'mine', { x: 2 })).state.value.x, 2);
  assert.deepEqual(await client.propose('Cursor', 'mine', { x: 11 }), { committed: false, code: 'UNAUTHORIZED', message: 'too far' });
});

test('close(): undecided proposals give up at once, leaving no timer, and a late decision commits nothing', async () => {
  const releases = [];
  const { client, clock, socket } = await withJavaCursor({
    decide: () => new Promise((resolve) => { releases.push(resolve); }),
  });
  client.publish('Cursor', { id: 'mine', x: 1 });
  proposeToMe(socket, 1, { x: 2 });
  const local = client.propose('Cursor', 'mine', { x: 3 });
  await settle();
  assert.equal(releases.length, 2);
  client.close();
  assert.equal(clock.pending(), 0, 'no timer outlives close()');
  await assert.rejects(local, (e) => e instanceof EntanglementError && e.code === 'NOT_CONNECTED');
  releases.forEach((release) => release(true));
  await settle();
  assert.equal(client.get('Cursor', 'mine').serial, 1, 'nothing committed after close()');
});

test('after close(): propose and delete of an own object are refused at once, arming no timer', async () => {
  const { client, clock } = await withJavaCursor({ decide: () => new Promise(() => {}) });
  client.publish('Cursor', { id: 'mine', x: 1 });
  client.close();
  await assert.rejects(client.propose('Cursor', 'mine', { x: 2 }), (e) => e instanceof EntanglementError && e.code === 'NOT_CONNECTED');
  await assert.rejects(client.delete('Cursor', 'mine'), (e) => e instanceof EntanglementError && e.code === 'NOT_CONNECTED');
  assert.equal(clock.pending(), 0, 'no timer outlives close()');
  assert.equal(client.get('Cursor', 'mine').serial, 1, 'nothing committed after close()');
});

test('a request that times out before a congested socket took it is never sent', async () => {
  const { client, clock, socket } = await withJavaCursor({ highWaterMark: 1000, requestTimeoutMs: 500 });
  await settle();
  socket.clearSent();
  socket.bufferedAmount = 5000;
  const outcome = client.propose('Cursor', 'java', { x: 2 });
  await settle();
  clock.advance(500);
  await assert.rejects(outcome, (e) => e.code === 'TIMEOUT');
  socket.bufferedAmount = 0;
  clock.advance(10);
  assert.deepEqual(socket.sentOf('PROPOSE'), [], 'the caller was told TIMEOUT: the proposal must not commit later');
});
