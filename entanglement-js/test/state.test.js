import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EntanglementClient, EntanglementError } from '../src/client.js';
import { newClient, connected, settle, sync } from '../test-support/fakes.js';

test('a received state is applied only when its version is newer than the one held', async () => {
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  const seen = [];
  client.watch('Cursor', 'c', (s) => seen.push([s.epoch, s.serial, s.value?.x]));
  socket.receive(sync('c', { id: 'c', x: 1 }, { epoch: 7, serial: 5 }));
  socket.receive(sync('c', { id: 'c', x: 0 }, { epoch: 7, serial: 4 })); // older
  socket.receive(sync('c', { id: 'c', x: 9 }, { epoch: 7, serial: 5 })); // duplicate version
  socket.receive(sync('c', { id: 'c', x: 2 }, { epoch: 7, serial: 6 }));
  socket.receive(sync('c', { id: 'c', x: 3 }, { epoch: 8, serial: 1 })); // a new epoch restarts serials
  socket.receive(sync('c', { id: 'c', x: 4 }, { epoch: 7, serial: 99 })); // an old epoch
  assert.deepEqual(seen, [[7, 5, 1], [7, 6, 2], [8, 1, 3]]);
  assert.equal(client.get('Cursor', 'c').value.x, 3);
  await settle();
  assert.deepEqual(socket.sentOf('ERROR'), [], 'stale states are ignored silently');
});

test('watch delivers the current state first; watchAll covers a type; unsubscribing stops delivery', async () => {
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  socket.receive(sync('a', { id: 'a', x: 1 }));
  socket.receive(sync('gone', {}, { deleted: true }));
  const one = [];
  const all = [];
  const stopOne = client.watch('Cursor', 'a', (s) => one.push(s.value.x));
  client.watchAll('Cursor', (s) => all.push(`${s.key}:${s.deleted}`));
  assert.deepEqual(one, [1]);
  assert.deepEqual(all, ['a:false'], 'the initial call skips tombstones');
  socket.receive(sync('b', { id: 'b', x: 5 }));
  socket.receive(sync('b', {}, { serial: 2, deleted: true }));
  stopOne();
  socket.receive(sync('a', { id: 'a', x: 2 }, { serial: 2 }));
  assert.deepEqual(one, [1]);
  assert.deepEqual(all, ['a:false', 'b:false', 'b:true', 'a:false']);
});

test('states naming this client as owner, unknown types and owner clashes are refused with ERROR', async () => {
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  client.publish('Cursor', { id: 'mine', x: 1 });
  socket.receive(sync('spoof', { id: 'spoof' }, { owner: 'owner-js' }));
  socket.receive(sync('x', { id: 'x' }, { type: 'Unknown' }));
  socket.receive(sync('mine', { id: 'mine', x: 2 }, { owner: 'owner-other' }));
  await settle();
  assert.deepEqual(socket.sentOf('ERROR').map((e) => [e.inReplyTo, e.code]),
    [[0, 'BAD_OWNER'], [0, 'UNKNOWN_TYPE'], [0, 'BAD_OWNER']]);
  assert.equal(client.get('Cursor', 'spoof'), undefined);
  assert.equal(client.get('Cursor', 'mine').value.x, 1);
});

test('publishing an object of another owner is refused', async () => {
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  socket.receive(sync('theirs', { id: 'theirs' }));
  assert.throws(() => client.publish('Cursor', { id: 'theirs', x: 1 }),
    (e) => e instanceof EntanglementError && e.code === 'BAD_OWNER');
  assert.throws(() => client.publish('Nope', {}), /not declared/);
});

test('WITHDRAW drops the object up to its version and tells its watchers; a stale one is ignored', async () => {
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  const seen = [];
  client.watch('Cursor', 'w', (s) => seen.push(s.deleted ? 'deleted' : s.value.x));
  socket.receive(sync('w', { id: 'w', x: 1 }, { serial: 2 }));
  const withdraw = { type: 'WITHDRAW', objectType: 'Cursor', key: 'w', owner: 'owner-java', epoch: 7 };
  socket.receive({ ...withdraw, serial: 1 }); // withdraws an older state: the newer one stays
  assert.deepEqual(seen, [1]);
  socket.receive({ ...withdraw, serial: 2 });
  assert.deepEqual(seen, [1, 'deleted']);
  assert.equal(client.get('Cursor', 'w'), undefined);
});

test('OWNER_REMOVED drops that owner\'s objects up to its epoch and ignores its old states', async () => {
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  socket.receive(sync('a', { id: 'a' }, { epoch: 7 }));
  socket.receive(sync('b', { id: 'b' }, { owner: 'owner-other' }));
  const seen = [];
  client.watchAll('Cursor', (s) => seen.push(`${s.key}:${s.deleted}`));
  seen.length = 0;
  socket.receive({ type: 'OWNER_REMOVED', owner: 'owner-java', epoch: 7 });
  assert.deepEqual(seen, ['a:true']);
  socket.receive(sync('a', { id: 'a' }, { epoch: 7, serial: 9 }));
  assert.equal(client.get('Cursor', 'a'), undefined);
  socket.receive(sync('a', { id: 'a' }, { epoch: 8, serial: 1 }));
  assert.equal(client.get('Cursor', 'a').epoch, 8, 'a later epoch is a new life');
  assert.ok(client.get('Cursor', 'b'));
});

test('a full WATERMARK drops what the owner no longer has; a partial one only records progress', async () => {
  const { client, clock, sockets } = newClient();
  let socket = await connected(client, sockets);
  socket.receive(sync('kept', { id: 'kept' }, { serial: 1 }));
  socket.receive(sync('deleted-meanwhile', { id: 'deleted-meanwhile' }, { serial: 2 }));
  socket.receive({ type: 'WATERMARK', owner: 'owner-java', epoch: 7, serial: 2, full: false });
  socket.drop();
  clock.advance(1000);
  socket = sockets.at(-1);
  socket.open();
  socket.receive({ type: 'HELLO', protocolVersion: 1, nodeId: 'java', owners: [{ owner: 'owner-java', epoch: 8 }], maxFrame: 0 });
  // The owner restarted in a new epoch: a full resync sends every object it still has.
  socket.receive(sync('kept', { id: 'kept' }, { epoch: 8, serial: 1 }));
  socket.receive({ type: 'WATERMARK', owner: 'owner-java', epoch: 8, serial: 1, full: true });
  assert.equal(client.get('Cursor', 'deleted-meanwhile'), undefined);
  assert.equal(client.get('Cursor', 'kept').epoch, 8);
});

test('event types: every publish is a new object, delivered once and never stored', async () => {
  const { client, sockets } = newClient({ types: { Click: { unique: true } } });
  const socket = await connected(client, sockets);
  const seen = [];
  client.watchAll('Click', (s) => seen.push(s.value.n));
  const mine = client.publish('Click', { n: 1 });
  await settle();
  assert.equal(socket.sentOf('SYNC')[0].key, mine.key);
  const theirs = sync('e1', { n: 2 }, { type: 'Click' });
  socket.receive(theirs);
  socket.receive(theirs);
  assert.deepEqual(seen, [1, 2]);
  assert.equal(client.get('Click', 'e1'), undefined);
});

test('composite keys are canonical JSON with sorted property names', async () => {
  const { client } = newClient({ types: { Cell: { key: (c) => ({ row: c.row, col: c.col }) } } });
  const snap = client.publish('Cell', { row: 2, col: 'b', v: 1 });
  assert.equal(snap.key, '{"col":"b","row":2}');
  assert.equal(client.get('Cell', { row: 2, col: 'b' }), snap);
});

test('options are checked: a URL, key functions, a WebSocket implementation', () => {
  assert.throws(() => new EntanglementClient({ types: {} }), /url/);
  assert.throws(() => new EntanglementClient({ url: 'ws://x', types: { T: {} } }), /key function/);
  assert.throws(() => new EntanglementClient({ url: 'ws://x', types: {}, WebSocket: 'no' }), /no WebSocket/);
});

test('keys, type names and owner ids no store could keep are refused here, not sent to get the link closed', async () => {
  // PROTOCOL.md 4.1: a peer refuses the whole link over such a name (BAD_ENCODING), and every
  // catch-up would send the object again.
  const { client, sockets } = newClient();
  const socket = await connected(client, sockets);
  const long = 'k'.repeat(501);
  assert.throws(() => client.publish('Cursor', { id: long }), TypeError);
  assert.throws(() => client.publish('Cursor', { id: 'a\u0000b' }), TypeError);
  assert.equal(client.get('Cursor', long), undefined);
  client.publish('Cursor', { id: 'k'.repeat(500) }); // the longest key
  socket.receive({ type: 'CREATE', requestId: 7, objectType: 'Cursor', owner: 'owner-js', attributes: { id: long }, hops: 1 });
  await settle();
  assert.deepEqual(socket.sentOf('SYNC').map((m) => m.key.length), [500]);
  assert.deepEqual(socket.sent.filter((m) => m.type === 'RESPONSE' || m.type === 'ERROR').map((m) => [m.inReplyTo, m.code]),
    [[7, 'INVALID_OPERATION']]);
  const options = { url: 'ws://x', WebSocket: class {} };
  for (const ownerId of ['', '  ', 'o'.repeat(201), 'o\u0000']) {
    assert.throws(() => new EntanglementClient({ ...options, ownerId }), /owner id/, JSON.stringify(ownerId));
  }
  assert.throws(() => new EntanglementClient({ ...options, types: { ['T'.repeat(101)]: { unique: true } } }), /type name/);
  assert.ok(new EntanglementClient({ ...options, ownerId: 'o'.repeat(200), types: { ['T'.repeat(100)]: { unique: true } } }));
});
