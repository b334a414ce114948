import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newClient, connected, settle, sync } from '../test-support/fakes.js';

async function withJavaCursor(options) {
  const c = newClient(options);
  const socket = await connected(c.client, c.sockets);
  socket.receive(sync('java', { id: 'java', x: 1, y: 1 }));
  return { ...c, socket };
}

const summary = (t) => [t.state, t.value && t.value.x];

/** The peer starts transition `id` on the client's object `key`, judged on the version sent last. */
function peerTransitionOnMine(socket, id, key = 'mine') {
  const base = socket.sentOf('SYNC').findLast((m) => m.key === key);
  socket.receive({
    type: 'TRANSITION', objectType: 'Cursor', key, owner: 'owner-js', baseEpoch: base.epoch,
    baseSerial: base.serial, transitionId: id, origin: 'java', seq: 1, partial: true, attributes: { x: 2 },
  });
}

test('a local transition: conflated TRANSITION updates, tentative callbacks, commit through the owner', async () => {
  const { client, socket } = await withJavaCursor();
  const seen = [];
  client.tentative('Cursor', 'java', (t) => seen.push(summary(t)));
  const tr = client.beginTransition('Cursor', 'java');
  tr.update({ x: 2 });
  tr.update({ x: 3 });
  assert.deepEqual(seen, [['ACTIVE', 2], ['ACTIVE', 3]]);
  await settle();
  assert.deepEqual(socket.sentOf('TRANSITION'), [{
    type: 'TRANSITION', objectType: 'Cursor', key: 'java', owner: 'owner-java', baseEpoch: 7, baseSerial: 1,
    transitionId: tr.id, origin: 'js-node', seq: 2, partial: true, attributes: { x: 3 },
  }], 'one frame for two updates of one task');
  const outcome = tr.commit();
  await settle();
  const p = socket.sentOf('PROPOSE')[0];
  assert.deepEqual([p.transitionId, p.partial, p.attributes], [tr.id, true, { x: 3 }]);
  assert.equal(socket.sent.at(-1), p, 'after the transition updates');
  socket.receive({ type: 'RESPONSE', inReplyTo: p.requestId, state: sync('java', { id: 'java', x: 3, y: 1 }, { serial: 2 }) });
  socket.receive({ type: 'TRANSITION_END', objectType: 'Cursor', key: 'java', transitionId: tr.id, state: 'CONFIRMED' });
  assert.equal((await outcome).state.value.x, 3);
  assert.deepEqual(seen.at(-1), ['CONFIRMED', null]);
  assert.equal(tr.update({ x: 4 }), false, 'an ended transition takes no update');
  assert.equal((await tr.commit()).code, 'BROKEN_TRANSITION');
});

test('a local transition the owner breaks: BROKEN everywhere here, no more updates, and a commit is refused', async () => {
  const { client, socket } = await withJavaCursor();
  const seen = [];
  client.tentative('Cursor', 'java', (t) => seen.push(summary(t)));
  const tr = client.beginTransition('Cursor', 'java');
  tr.update({ x: 5 });
  await settle();
  socket.receive({ type: 'TRANSITION_END', objectType: 'Cursor', key: 'java', transitionId: tr.id, state: 'BROKEN' });
  assert.deepEqual(seen, [['ACTIVE', 5], ['BROKEN', null]]);
  assert.equal(tr.update({ x: 6 }), false, 'a broken transition takes no update');
  assert.equal((await tr.commit()).code, 'BROKEN_TRANSITION');
  assert.equal(client.get('Cursor', 'java').value.x, 1, 'nothing of its values stays');
});

test('a transition committed and then broken at the owner: the outcome is the owner\'s rejection, as a value', async () => {
  const { client, socket } = await withJavaCursor();
  const tr = client.beginTransition('Cursor', 'java');
  tr.update({ x: 5 });
  const outcome = tr.commit();
  await settle();
  const p = socket.sentOf('PROPOSE')[0];
  socket.receive({ type: 'ERROR', inReplyTo: p.requestId, code: 'BROKEN_TRANSITION', message: 'transition ' + tr.id + ' BROKEN' });
  const result = await outcome;
  assert.equal(result.committed, false);
  assert.equal(result.code, 'BROKEN_TRANSITION');
});

test('abort ends a transition everywhere; commit without update is refused', async () => {
  const { client, socket } = await withJavaCursor();
  const seen = [];
  client.tentativeAll('Cursor', (t) => seen.push(t.state));
  const empty = client.beginTransition('Cursor', 'java');
  assert.equal((await empty.commit()).code, 'INVALID_OPERATION');
  const tr = client.beginTransition('Cursor', 'java');
  tr.update({ x: 5 });
  tr.abort();
  await settle();
  assert.deepEqual(seen, ['ACTIVE', 'ABORTED']);
  assert.deepEqual(socket.sentOf('TRANSITION_END'),
    [{ type: 'TRANSITION_END', objectType: 'Cursor', key: 'java', transitionId: tr.id, state: 'ABORTED' }]);
  assert.deepEqual(socket.sentOf('TRANSITION'), [], 'the pending update of an aborted transition is not sent');
  assert.throws(() => client.beginTransition('Cursor', 'nobody'), (e) => e.code === 'NOT_FOUND');
});

test('a transition from the peer: tentative values merged into the committed state, then expiry after the TTL', async () => {
  const { client, clock, socket } = await withJavaCursor({ transitionTtlMs: 1000 });
  const seen = [];
  const transition = (seq, x) => ({
    type: 'TRANSITION', objectType: 'Cursor', key: 'java', owner: 'owner-java', baseEpoch: 7, baseSerial: 1,
    transitionId: 't1', origin: 'java', seq, partial: true, attributes: { x },
  });
  socket.receive(transition(1, 10));
  client.tentative('Cursor', 'java', (t) => seen.push([...summary(t), t.value?.y, t.origin]));
  socket.receive(transition(3, 30));
  socket.receive(transition(2, 20)); // out of order: dropped
  assert.deepEqual(seen, [['ACTIVE', 10, 1, 'java'], ['ACTIVE', 30, 1, 'java']], 'current transitions first');
  clock.advance(999);
  socket.receive(transition(4, 40)); // an update restarts the TTL
  clock.advance(999);
  assert.equal(seen.at(-1)[0], 'ACTIVE');
  clock.advance(1);
  assert.deepEqual(seen.at(-1), ['EXPIRED', null, undefined, 'java']);
  socket.receive(transition(5, 50));
  assert.equal(seen.length, 4, 'an ended transition stays ended');
  await settle();
  assert.deepEqual(socket.sentOf('TRANSITION_END'), [], 'EXPIRED is not sent');
});

test('owner side: a transition on an owned object is confirmed by the commit that names it', async () => {
  const { client, socket } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1 });
  await settle();
  const base = socket.sentOf('SYNC').find((m) => m.key === 'mine');
  socket.clearSent();
  const seen = [];
  client.tentative('Cursor', 'mine', (t) => seen.push(t.state));
  const transition = (id, seq, x) => ({
    type: 'TRANSITION', objectType: 'Cursor', key: 'mine', owner: 'owner-js', baseEpoch: base.epoch,
    baseSerial: base.serial, transitionId: id, origin: 'java', seq, partial: true, attributes: { x },
  });
  socket.receive(transition('old', 1, 5));
  socket.receive(transition('new', 1, 6)); // the newest transition wins: 'old' is broken
  socket.receive({
    type: 'PROPOSE', requestId: 9, kind: 'UPDATE', objectType: 'Cursor', key: 'mine', owner: 'owner-js',
    partial: true, attributes: { x: 6 }, transitionId: 'new', hops: 1,
  });
  socket.receive({
    type: 'PROPOSE', requestId: 10, kind: 'UPDATE', objectType: 'Cursor', key: 'mine', owner: 'owner-js',
    partial: true, attributes: { x: 5 }, transitionId: 'old', hops: 1,
  });
  await settle();
  assert.deepEqual(seen, ['ACTIVE', 'BROKEN', 'ACTIVE', 'CONFIRMED']);
  assert.deepEqual(socket.sent.filter((m) => m.type !== 'SYNC').map((m) => [m.type, m.transitionId ?? m.inReplyTo, m.state?.serial ?? m.state ?? m.code]), [
    ['TRANSITION_END', 'old', 'BROKEN'],
    ['TRANSITION_END', 'new', 'CONFIRMED'],
    ['RESPONSE', 9, 2],
    ['ERROR', 10, 'BROKEN_TRANSITION'],
  ]);
});

test('owner side: rejecting a proposal that names a transition ends it as REJECTED', async () => {
  const { client, socket } = await withJavaCursor({ decide: () => false });
  client.publish('Cursor', { id: 'mine', x: 1 });
  await settle();
  peerTransitionOnMine(socket, 't');
  socket.receive({
    type: 'PROPOSE', requestId: 1, kind: 'UPDATE', objectType: 'Cursor', key: 'mine', owner: 'owner-js',
    partial: true, attributes: { x: 2 }, transitionId: 't', hops: 1,
  });
  await settle();
  assert.deepEqual(socket.sent.filter((m) => m.type === 'ERROR' || m.type === 'TRANSITION_END').map((m) => m.code ?? m.state),
    ['UNAUTHORIZED', 'REJECTED']);
});

test('a transition on an owned object commits locally; active transitions are re-sent after a reconnect', async () => {
  const { client, clock, sockets, socket } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1, y: 1 });
  const own = client.beginTransition('Cursor', 'mine');
  own.update({ x: 2 });
  const outcome = await own.commit();
  assert.deepEqual(outcome.state.value, { id: 'mine', x: 2, y: 1 });
  await settle();
  assert.equal(socket.sentOf('TRANSITION_END')[0].state, 'CONFIRMED');

  const remote = client.beginTransition('Cursor', 'java');
  remote.update({ x: 7 });
  socket.drop();
  clock.advance(1000);
  const next = sockets.at(-1);
  next.open();
  await settle();
  assert.deepEqual(next.sent.map((m) => m.type), ['HELLO', 'ROUTES', 'CATCH_UP', 'TRANSITION']);
  assert.equal(next.sent[3].transitionId, remote.id);
});

test('a transition judged on another committed version than the one held is not applied', async () => {
  const { client, socket } = await withJavaCursor();
  socket.receive(sync('java', { id: 'java', x: 2, y: 1 }, { serial: 2 }));
  const seen = [];
  client.tentative('Cursor', 'java', (t) => seen.push(summary(t)));
  const transition = (baseSerial, seq, x) => ({
    type: 'TRANSITION', objectType: 'Cursor', key: 'java', owner: 'owner-java', baseEpoch: 7, baseSerial,
    transitionId: 't1', origin: 'java', seq, partial: true, attributes: { x },
  });
  socket.receive(transition(1, 1, 500));
  assert.deepEqual(seen, [], 'judged on 7:1, the client holds 7:2');
  socket.receive(transition(2, 2, 30));
  assert.deepEqual(seen, [['ACTIVE', 30]]);
});

const remoteTransition = (fields) => ({
  type: 'TRANSITION', objectType: 'Cursor', key: 'java', owner: 'owner-java', baseEpoch: 7, baseSerial: 1,
  transitionId: 't1', origin: 'java', seq: 1, partial: true, attributes: { x: 10 }, ...fields,
});

test('a TRANSITION is ignored when it names another owner, or its id is open on another object, by another originator, or is this client\'s', async () => {
  const { client, socket } = await withJavaCursor();
  socket.receive(sync('other', { id: 'other', x: 1, y: 1 }));
  const seen = [];
  client.tentativeAll('Cursor', (t) => seen.push([t.key, t.transitionId, t.value?.x]));
  socket.receive(remoteTransition({ owner: 'owner-x' })); // not the object's owner
  assert.deepEqual(seen, []);
  socket.receive(remoteTransition({}));
  socket.receive(remoteTransition({ key: 'other', seq: 2, attributes: { x: 20 } })); // t1 is open on java
  socket.receive(remoteTransition({ origin: 'mallory', seq: 3, attributes: { x: 30 } })); // another originator
  const own = client.beginTransition('Cursor', 'java');
  own.update({ x: 5 });
  socket.receive(remoteTransition({ transitionId: own.id, origin: 'java', seq: 9, attributes: { x: 90 } }));
  socket.receive(remoteTransition({ transitionId: 'spoof', origin: client.nodeId, attributes: { x: 91 } }));
  assert.deepEqual(seen, [['java', 't1', 10], ['java', own.id, 5]]);
});

test('a TRANSITION_END naming another object, or an unheld object without a slot, ends nothing; the peer cannot abort this client\'s transition', async () => {
  const { client, socket } = await withJavaCursor();
  socket.receive(sync('other', { id: 'other', x: 1, y: 1 }));
  const seen = [];
  client.tentativeAll('Cursor', (t) => seen.push([t.transitionId, t.state]));
  socket.receive(remoteTransition({}));
  socket.receive({ type: 'TRANSITION_END', objectType: 'Cursor', key: 'other', transitionId: 't1', state: 'ABORTED' });
  socket.receive({ type: 'TRANSITION_END', objectType: 'Cursor', key: 'ghost', transitionId: 'g', state: 'BROKEN' });
  socket.receive(remoteTransition({ seq: 2, attributes: { x: 20 } })); // t1 still open: applied
  socket.receive(remoteTransition({ transitionId: 'g' })); // g was not recorded as ended
  const own = client.beginTransition('Cursor', 'java');
  own.update({ x: 5 });
  socket.receive({ type: 'TRANSITION_END', objectType: 'Cursor', key: 'java', transitionId: own.id, state: 'ABORTED' });
  socket.receive({ type: 'TRANSITION_END', objectType: 'Cursor', key: 'java', transitionId: 't1', state: 'ABORTED' });
  assert.deepEqual(seen, [['t1', 'ACTIVE'], ['t1', 'ACTIVE'], ['g', 'ACTIVE'], [own.id, 'ACTIVE'], ['t1', 'ABORTED']]);
});

test('owner side: a PROPOSE naming a transition open on another object is refused INVALID_OPERATION', async () => {
  const { client, socket } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1 });
  client.publish('Cursor', { id: 'also-mine', x: 1 });
  await settle();
  peerTransitionOnMine(socket, 't');
  socket.clearSent();
  socket.receive({
    type: 'PROPOSE', requestId: 4, kind: 'UPDATE', objectType: 'Cursor', key: 'also-mine', owner: 'owner-js',
    partial: true, attributes: { x: 3 }, transitionId: 't', hops: 1,
  });
  await settle();
  assert.deepEqual(socket.sent.map((m) => [m.type, m.inReplyTo, m.code]), [['ERROR', 4, 'INVALID_OPERATION']]);
  assert.equal(client.get('Cursor', 'also-mine').serial, 2);
});

test('on an object this client owns, the peer cannot decide a transition; it may abort only one whose updates it sent', async () => {
  const { client, socket } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1 });
  client.publish('Cursor', { id: 'also-mine', x: 1 });
  await settle();
  peerTransitionOnMine(socket, 't');
  const own = client.beginTransition('Cursor', 'also-mine'); // at the owner the newest wins: another object
  own.update({ x: 9 });
  const seen = [];
  client.tentativeAll('Cursor', (t) => seen.push([t.key, t.transitionId, t.state]));
  const end = (key, id, state) => socket.receive({ type: 'TRANSITION_END', objectType: 'Cursor', key, transitionId: id, state });
  end('mine', 't', 'BROKEN');
  end('also-mine', own.id, 'CONFIRMED');
  end('mine', 'never-opened', 'ABORTED');
  end('mine', 't', 'ABORTED'); // the peer sent t's updates: it may abort it
  assert.deepEqual(seen, [['mine', 't', 'ACTIVE'], ['also-mine', own.id, 'ACTIVE'], ['mine', 't', 'ABORTED']]);
  const outcome = await own.commit();
  assert.equal(outcome.committed, true, JSON.stringify(outcome));
});

test('an end decided for one object does not touch the same id open on another: no slot is left behind', async () => {
  let release;
  const { client, clock, socket } = await withJavaCursor({ decide: () => new Promise((r) => { release = r; }) });
  client.publish('Cursor', { id: 'a', x: 1 });
  client.publish('Cursor', { id: 'b', x: 1 });
  await settle();
  socket.receive({
    type: 'PROPOSE', requestId: 1, kind: 'UPDATE', objectType: 'Cursor', key: 'a', owner: 'owner-js',
    partial: true, attributes: { x: 3 }, transitionId: 't', hops: 1,
  });
  await settle();
  peerTransitionOnMine(socket, 't', 'b'); // t opens on b while a's decision is pending
  release(false);
  await settle();
  clock.advance(60_000); // past the TTL: t on b expires
  const open = [];
  client.tentativeAll('Cursor', (t) => open.push([t.key, t.transitionId, t.state]));
  assert.deepEqual(open, []);
});

test('after close(), committing a transition on an own object is refused and commits nothing', async () => {
  const { client } = await withJavaCursor();
  client.publish('Cursor', { id: 'mine', x: 1 });
  const own = client.beginTransition('Cursor', 'mine');
  own.update({ x: 9 });
  client.close();
  await assert.rejects(own.commit(), (e) => e.code === 'NOT_CONNECTED');
  assert.equal(client.get('Cursor', 'mine').serial, 1);
});
