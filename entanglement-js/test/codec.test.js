import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { encode as cbor } from 'cbor-x';
import {
  encodeBody, decodeBody, encodeFrame, decodeFrame, ProtocolError,
} from '../src/codec.js';

/** A golden vector of the Java codec: hex after the '#' comment lines. */
function golden(name) {
  const url = new URL(`../../entanglement-reactive/src/test/resources/golden/${name}`, import.meta.url);
  const hex = readFileSync(url, 'utf8').split('\n').filter((l) => !l.startsWith('#')).join('').replace(/\s/g, '');
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');

// The messages the golden files hold (see the comments in those files).
const GOLDEN_SYNC = {
  type: 'SYNC', objectType: 'Cursor', key: 'c1', owner: 'owner-a', epoch: 3, serial: 42,
  committedAt: 1700000000000, deleted: false, attributes: { x: 12, label: 'cursor' },
};
const GOLDEN_HELLO = {
  type: 'HELLO', protocolVersion: 1, nodeId: 'node-a',
  owners: [{ owner: 'owner-a', epoch: 3 }, { owner: 'owner-b', epoch: 0 }], maxFrame: 65536,
};
// cbor-x writes definite-length maps where Jackson writes indefinite ones; apart from the map
// headers (bf ... ff -> a8/a4/a2 ...) these are the golden bytes, key order and integer encodings
// included. The Java interop test decodes them with the Java codec.
const DEFINITE_SYNC = '03a8617466437572736f72616b626331616f676f776e65722d616165036173182a61631b0000018bcfe568006164f46161a261780c656c6162656c66637572736f72';
const DEFINITE_HELLO = '01a4617601616e666e6f64652d61616f82a2616f676f776e65722d61616503a2616f676f776e65722d62616500616d1a00010000';

test('golden SYNC: the Java encoding decodes to the message, and ours matches it', () => {
  assert.deepEqual(decodeBody(golden('sync.hex')), GOLDEN_SYNC);
  const ours = encodeBody(GOLDEN_SYNC);
  assert.equal(hex(ours), DEFINITE_SYNC);
  assert.deepEqual(decodeBody(ours), GOLDEN_SYNC);
});

test('golden HELLO: the Java encoding decodes to the message, and ours matches it', () => {
  assert.deepEqual(decodeBody(golden('hello.hex')), GOLDEN_HELLO);
  const ours = encodeBody(GOLDEN_HELLO);
  assert.equal(hex(ours), DEFINITE_HELLO);
  assert.deepEqual(decodeBody(ours), GOLDEN_HELLO);
});

const { type: _, ...SYNC_FIELDS } = GOLDEN_SYNC; // a SYNC map inside a RESPONSE

const SAMPLES = [
  { type: 'ROUTES', hops: { 'owner-a': 0, 'owner-b': 16 } },
  { type: 'WITHDRAW', objectType: 'Cursor', key: 'k', owner: 'o', epoch: 1, serial: 7 },
  { type: 'PROPOSE', requestId: 7, kind: 'UPDATE', objectType: 'Cursor', key: 'k', owner: 'o', partial: true,
    attributes: { x: 1.5, nested: { list: [1, 'two', null, true] } }, transitionId: null, hops: 0 },
  { type: 'PROPOSE', requestId: 8, kind: 'DELETE', objectType: 'Cursor', key: 'k', owner: 'o', partial: true,
    attributes: {}, transitionId: 'b1f1c3e2-0000-4000-8000-000000000000', hops: 3 },
  { type: 'CREATE', requestId: 9, objectType: 'Cursor', owner: 'o', attributes: { id: 'n' }, hops: 1 },
  { type: 'TRANSITION', objectType: 'Cursor', key: 'k', owner: 'o', baseEpoch: 2, baseSerial: 9, transitionId: 't', origin: 'js',
    seq: 4, partial: true, attributes: { x: -3 } },
  { type: 'TRANSITION_END', objectType: 'Cursor', key: 'k', transitionId: 't', state: 'CONFIRMED' },
  { type: 'RESPONSE', inReplyTo: 9, state: { ...SYNC_FIELDS, deleted: true, attributes: {} } },
  { type: 'ERROR', inReplyTo: 0, code: 'BAD_OWNER', message: 'no' },
  { type: 'NO_RESPONSE', inReplyTo: 3 },
  { type: 'OWNER_REMOVED', owner: 'o', epoch: 1700000000123 },
  { type: 'PING', nonce: 1700000000123 },
  { type: 'PONG', nonce: 5 },
  { type: 'GOAWAY', code: 'TIMEOUT', message: 'bye' },
  { type: 'CATCH_UP', holds: [{ owner: 'o', epoch: 1700000000123, serial: 2 ** 40 }] },
  { type: 'WATERMARK', owner: 'o', epoch: 1, serial: 2, full: true },
];

test('every message type survives encode then decode', () => {
  for (const m of SAMPLES) {
    assert.deepEqual(decodeBody(encodeBody(m)), m, m.type);
  }
});

test('integers beyond 32 bits travel as CBOR integers, in fields and in attributes', () => {
  const body = hex(encodeBody({ type: 'PING', nonce: 1700000000000 }));
  assert.equal(body, '0da1616e1b0000018bcfe56800'); // 0x1b: 64-bit unsigned integer, not a float
  const m = { type: 'WITHDRAW', objectType: 'T', key: 'k', owner: 'o', epoch: 1700000000000, serial: 2 };
  assert.ok(hex(encodeBody(m)).length > 0);
  const attrs = hex(encodeBody({ ...SAMPLES[2], attributes: { at: -1700000000000, list: [2 ** 40] } }));
  assert.ok(attrs.includes('3b0000018bcfe567ff'), 'negative 64-bit integer'); // -1 - n
  assert.ok(attrs.includes('1b0000010000000000'), '2^40 inside an array');
  assert.ok(!attrs.includes('fb'), 'no float');
});

test('undefined attributes are left out, like JSON', () => {
  const m = decodeBody(encodeBody({ ...SAMPLES[2], attributes: { a: 1, gone: undefined, list: [undefined] } }));
  assert.deepEqual(m.attributes, { a: 1, list: [null] });
});

test('malformed bodies are refused with BAD_ENCODING', () => {
  const body = (code, map) => Uint8Array.from([code, ...cbor(map)]);
  const { t, k, o, e, s, c, d, a } = { t: 'Cursor', k: 'c1', o: 'owner-a', e: 3, s: 1, c: 5, d: false, a: {} };
  const cases = {
    'an empty body': new Uint8Array(0),
    'an unknown message type': body(99, {}),
    'a body that is not CBOR': Uint8Array.of(3, 0xff, 0xff),
    'a body that is not a map': body(3, 1),
    'a missing key': body(4, { t: 'Cursor' }),
    'text where an integer belongs': body(3, { t, k, o, e: '3', s, c, d, a }),
    'a float where an integer belongs': body(3, { t, k, o, e: 3.5, s, c, d, a }),
    'attributes that are not a map': body(3, { t, k, o, e, s, c, d, a: [1] }),
    'null where text is required': body(4, { t: null, k: 'x' }),
  };
  for (const [what, b] of Object.entries(cases)) {
    assert.throws(() => decodeBody(b), (err) => err instanceof ProtocolError && err.code === 'BAD_ENCODING', what);
  }
  assert.deepEqual(decodeBody(body(4, { t: 'Cursor', k: 'x', o: 'o', e: 1, s: 2, later: 'ignored' })),
    { type: 'WITHDRAW', objectType: 'Cursor', key: 'x', owner: 'o', epoch: 1, serial: 2 }, 'unknown keys are ignored');
});

test('frames: header, one frame per message, critical flags and size limits', () => {
  const frame = encodeFrame({ type: 'PONG', nonce: 1 });
  const view = new DataView(frame.buffer);
  assert.equal(view.getUint32(0), frame.length - 8);
  assert.equal(view.getUint32(4), 0);
  assert.deepEqual(decodeFrame(frame.buffer), { type: 'PONG', nonce: 1 });
  assert.deepEqual(decodeFrame(Buffer.from(frame)), { type: 'PONG', nonce: 1 }, 'a Node.js Buffer');

  const longer = new Uint8Array(frame.length + 1);
  longer.set(frame);
  assert.throws(() => decodeFrame(longer), /does not match/);

  const nonCritical = frame.slice();
  new DataView(nonCritical.buffer).setUint32(4, 0x00010000);
  assert.deepEqual(decodeFrame(nonCritical), { type: 'PONG', nonce: 1 }, 'unknown non-critical flags are ignored');
  const critical = frame.slice();
  new DataView(critical.buffer).setUint32(4, 0x00000001);
  assert.throws(() => decodeFrame(critical), /critical/);

  assert.throws(() => decodeFrame(frame, frame.length - 9), /exceeds/);
  assert.throws(() => decodeFrame(new Uint8Array(3)), /shorter/);
});
