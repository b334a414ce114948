// The JavaScript side of JsClientInteropTest (entanglement-js/src/test/java): a client connected to
// a real Java node. It reads commands from stdin, one per line, and reports on stdout, one event per
// line: "<event> <fields...>". The Java test drives the steps and checks both sides.
//
// Usage: node --experimental-websocket test-interop/interop.mjs ws://127.0.0.1:PORT/sync [EPOCH]
// (EPOCH: the client's epoch instead of its start time, as after a clock that went back)
// (the flag is needed on Node.js 20 only, where WebSocket is not yet a global by default).

import { createInterface } from 'node:readline';
import { EntanglementClient, encodeBody } from '../src/index.js';

const url = process.argv[2];
const epoch = process.argv[3] === undefined ? undefined : Number(process.argv[3]);
const out = (...fields) => process.stdout.write(`${fields.join(' ')}\n`);
if (typeof WebSocket !== 'function') {
  process.stderr.write('no global WebSocket: run Node.js 22+, or Node.js 20 with --experimental-websocket\n');
  process.exit(2);
}

// The messages of the golden vectors, encoded by this client, for the Java codec to decode.
const hex = (bytes) => Buffer.from(bytes).toString('hex');
out('golden-sync', hex(encodeBody({
  type: 'SYNC', objectType: 'Cursor', key: 'c1', owner: 'owner-a', epoch: 3, serial: 42,
  committedAt: 1700000000000, deleted: false, attributes: { x: 12, label: 'cursor' },
})));
out('golden-hello', hex(encodeBody({
  type: 'HELLO', protocolVersion: 1, nodeId: 'node-a',
  owners: [{ owner: 'owner-a', epoch: 3 }, { owner: 'owner-b', epoch: 0 }], maxFrame: 65536,
})));

const client = new EntanglementClient({
  url,
  nodeId: 'js-node',
  ownerId: 'owner-js',
  epoch,
  types: { Cursor: { key: (c) => c.id } },
  backoff: { initialMs: 50, maxMs: 200 },
  // Proposals for this client's objects: negative x is refused, anything else is committed with
  // y set to 99, so that the Java side can tell that this hook decided.
  decide: (p) => {
    out('decide', p.kind, p.key, p.from, ...(p.proposed ? [p.proposed.x] : []));
    if (p.proposed?.x < 0) return { reject: 'UNAUTHORIZED', message: 'js says no' };
    return { commit: { ...p.proposed, y: 99 } };
  },
});
client.on('connected', (e) => out('connected', e.peer));
client.on('disconnected', (e) => out('disconnected', e.retryInMs));
client.on('error', (e) => out('peer-error', e.code, e.message));
client.watch('Cursor', 'java', (s) => out('seen', s.key, ...(s.deleted ? ['deleted'] : [s.value.x, s.value.y])));
client.tentative('Cursor', 'java', (t) => out('tentative', t.key, t.state, ...(t.value ? [t.value.x] : [])));

const report = (key) => (o) => out('outcome', key, ...(o.committed ? ['committed', o.state.value.x, o.state.value.y]
  : ['rejected', o.code, o.message]));
const failed = (key) => (e) => out('failed', key, e.code, e.message);
let transition = null;

const commands = {
  publish: (id, x, y) => {
    client.publish('Cursor', { id, x: Number(x), y: Number(y) });
    out('published', id, x, y);
  },
  propose: (key, x) => client.propose('Cursor', key, { x: Number(x) }).then(report(key), failed(key)),
  transition: (key, ...xs) => {
    transition = client.beginTransition('Cursor', key);
    for (const x of xs) transition.update({ x: Number(x) });
    out('transition-updated', key, xs.at(-1));
  },
  'transition-commit': () => transition.commit().then(report(transition.key), failed(transition.key)),
  // A publish right before close(), in the same task: it must still reach the node.
  'publish-close': (id, x, y) => {
    client.publish('Cursor', { id, x: Number(x), y: Number(y) });
    client.close();
    out('closed');
  },
  quit: () => {
    client.close();
    out('bye');
    process.exit(0);
  },
};

createInterface({ input: process.stdin }).on('line', (line) => {
  const [name, ...args] = line.trim().split(/\s+/);
  const command = commands[name];
  if (!command) {
    process.stderr.write(`unknown command: ${line}\n`);
    process.exit(3);
  }
  command(...args);
});
// The test's end closes stdin: leave then, whatever happened.
process.stdin.on('end', () => process.exit(0));

client.connect();
out('started', client.ownerId, client.epoch);
