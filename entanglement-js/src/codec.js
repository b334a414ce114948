// The wire codec of docs/PROTOCOL.md: frames (8-byte header + body) and message bodies (one type
// byte + a CBOR map under one-letter keys). CBOR itself is cbor-x's; this file only maps message
// fields to keys and checks what it decodes.

import { Encoder, Decoder } from 'cbor-x';

/** Protocol version sent in HELLO; a peer with another version is refused. */
export const PROTOCOL_VERSION = 1;
/** Bytes of the frame header: u32 BE body length, u32 BE flags. */
export const HEADER_BYTES = 8;
/** Default maximum body size of a frame (1 MiB), as in the Java node. */
export const DEFAULT_MAX_FRAME = 1024 * 1024;
/** Flag bits 0-15 are critical: a receiver refuses a frame carrying one it does not know. */
const CRITICAL_FLAGS = 0x0000ffff;

/** A frame or body that is not a valid message; `code` is the ERROR code to answer with. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

// Field kinds. Integers of the protocol are CBOR integers; cbor-x writes a JS number above 32 bits
// as a float, so such values are handed to it as BigInt (see wireInt).
const TEXT = 'text';
const TEXT_OR_NULL = 'text?';
const INT = 'int';
const BOOL = 'bool';
const MAP = 'map'; // attributes: a CBOR map of any data

const OWNER_AD = [['owner', 'o', TEXT], ['epoch', 'e', INT]];
const MARK = [['owner', 'o', TEXT], ['epoch', 'e', INT], ['serial', 's', INT]];
const SYNC_FIELDS = [
  ['objectType', 't', TEXT], ['key', 'k', TEXT], ['owner', 'o', TEXT], ['epoch', 'e', INT],
  ['serial', 's', INT], ['committedAt', 'c', INT], ['deleted', 'd', BOOL], ['attributes', 'a', MAP],
];

/**
 * Every message type: its code and its fields as [field name, wire key, kind]. A kind may also be
 * {array: fields} (an array of maps), {hops: true} (a map of text to integer) or {sync: true}.
 * The Java codec requires every key, so every key is always written (null where allowed).
 */
const TYPES = {
  HELLO: [1, [['protocolVersion', 'v', INT], ['nodeId', 'n', TEXT], ['owners', 'o', { array: OWNER_AD }],
    ['maxFrame', 'm', INT]]],
  ROUTES: [2, [['hops', 'h', { hops: true }]]],
  SYNC: [3, SYNC_FIELDS],
  WITHDRAW: [4, [['objectType', 't', TEXT], ['key', 'k', TEXT], ['owner', 'o', TEXT], ['epoch', 'e', INT],
    ['serial', 's', INT]]],
  PROPOSE: [5, [['requestId', 'r', INT], ['kind', 'p', TEXT], ['objectType', 't', TEXT], ['key', 'k', TEXT],
    ['owner', 'o', TEXT], ['partial', 'x', BOOL], ['attributes', 'a', MAP], ['transitionId', 'i', TEXT_OR_NULL],
    ['hops', 'h', INT]]],
  CREATE: [6, [['requestId', 'r', INT], ['objectType', 't', TEXT], ['owner', 'o', TEXT], ['attributes', 'a', MAP],
    ['hops', 'h', INT]]],
  TRANSITION: [7, [['objectType', 't', TEXT], ['key', 'k', TEXT], ['owner', 'o', TEXT], ['baseEpoch', 'e', INT],
    ['baseSerial', 's', INT], ['transitionId', 'i', TEXT],
    ['origin', 'g', TEXT], ['seq', 'q', INT], ['partial', 'x', BOOL], ['attributes', 'a', MAP]]],
  TRANSITION_END: [8, [['objectType', 't', TEXT], ['key', 'k', TEXT], ['transitionId', 'i', TEXT],
    ['state', 'z', TEXT]]],
  RESPONSE: [9, [['inReplyTo', 'r', INT], ['state', 's', { sync: true }]]],
  ERROR: [10, [['inReplyTo', 'r', INT], ['code', 'c', TEXT], ['message', 'm', TEXT]]],
  NO_RESPONSE: [11, [['inReplyTo', 'r', INT]]],
  OWNER_REMOVED: [12, [['owner', 'o', TEXT], ['epoch', 'e', INT]]],
  PING: [13, [['nonce', 'n', INT]]],
  PONG: [14, [['nonce', 'n', INT]]],
  GOAWAY: [15, [['code', 'c', TEXT], ['message', 'm', TEXT]]],
  CATCH_UP: [16, [['holds', 'h', { array: MARK }]]],
  WATERMARK: [17, [['owner', 'o', TEXT], ['epoch', 'e', INT], ['serial', 's', INT], ['full', 'f', BOOL]]],
};

const BY_CODE = new Map(Object.entries(TYPES).map(([name, [code, fields]]) => [code, { name, fields }]));

// Definite-length maps with minimal headers, no cbor-x record extension, no tags for byte arrays.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, tagUint8Array: false });
// 64-bit integers decode to numbers (exact up to 2^53, which covers epochs, serials and times).
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true });

/** An integer as cbor-x should get it: a BigInt when it does not fit in 32 bits. */
function wireInt(n) {
  if (typeof n === 'bigint') return n;
  return n > 0xffffffff || n < -0x100000000 ? BigInt(n) : n;
}

/**
 * Attribute data as it should travel: every integer beyond 32 bits turned into a BigInt (a CBOR
 * integer, not a float) and, as in JSON, undefined properties left out and undefined array items
 * written as null. The input is returned unchanged (not copied) when nothing needs changing.
 */
function wireData(value) {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) ? wireInt(value) : value;
  }
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
  let out = value;
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      const w = v === undefined ? null : wireData(v);
      if (w !== v) {
        if (out === value) out = value.slice();
        out[i] = w;
      }
    });
    return out;
  }
  for (const k of Object.keys(value)) {
    const v = value[k];
    const w = wireData(v);
    if (w !== v || v === undefined) {
      if (out === value) out = { ...value };
      if (v === undefined) delete out[k];
      else out[k] = w;
    }
  }
  return out;
}

function toWire(fields, message) {
  const map = {};
  for (const [name, key, kind] of fields) {
    const v = message[name];
    if (kind === INT) map[key] = wireInt(v);
    else if (kind === MAP) map[key] = wireData(v);
    else if (kind === TEXT_OR_NULL) map[key] = v ?? null;
    else if (kind.array) map[key] = v.map((item) => toWire(kind.array, item));
    else if (kind.sync) map[key] = toWire(SYNC_FIELDS, v);
    else map[key] = v;
  }
  return map;
}

function malformed(type, why) {
  return new ProtocolError('BAD_ENCODING', `malformed ${type} body: ${why}`);
}

function isMap(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function fromWire(type, fields, map) {
  if (!isMap(map)) throw malformed(type, 'not a map');
  const out = {};
  for (const [name, key, kind] of fields) {
    const v = map[key];
    if (v === undefined) throw malformed(type, `missing key '${key}'`);
    if (kind === TEXT) {
      if (typeof v !== 'string') throw malformed(type, `'${key}' must be text`);
    } else if (kind === TEXT_OR_NULL) {
      if (v !== null && typeof v !== 'string') throw malformed(type, `'${key}' must be text or null`);
    } else if (kind === INT) {
      if (!Number.isInteger(v)) throw malformed(type, `'${key}' must be an integer`);
    } else if (kind === BOOL) {
      if (typeof v !== 'boolean') throw malformed(type, `'${key}' must be a boolean`);
    } else if (kind === MAP) {
      if (!isMap(v)) throw malformed(type, `'${key}' must be a map`);
    } else if (kind.array) {
      if (!Array.isArray(v)) throw malformed(type, `'${key}' must be an array`);
      out[name] = v.map((item) => fromWire(type, kind.array, item));
      continue;
    } else if (kind.hops) {
      if (!isMap(v) || !Object.values(v).every(Number.isInteger)) {
        throw malformed(type, `'${key}' must map text to integers`);
      }
    } else if (kind.sync) {
      out[name] = fromWire(type, SYNC_FIELDS, v);
      continue;
    }
    out[name] = v;
  }
  return out;
}

/**
 * Encodes a message into a frame body. A message is a plain object: `type` (one of the names of
 * PROTOCOL.md §2, e.g. 'SYNC') and its fields under the names of the Java records
 * (`dev.entanglement.protocol.Message`), e.g. {type: 'SYNC', objectType, key, owner, epoch, ...}.
 */
export function encodeBody(message) {
  const spec = TYPES[message.type];
  if (!spec) throw new TypeError(`unknown message type ${message.type}`);
  const cbor = encoder.encode(toWire(spec[1], message));
  const body = new Uint8Array(cbor.length + 1);
  body[0] = spec[0];
  body.set(cbor, 1);
  return body;
}

/** Decodes a frame body; throws ProtocolError (BAD_ENCODING) if it is not a valid message. */
export function decodeBody(body) {
  if (body.length === 0) throw new ProtocolError('BAD_ENCODING', 'empty frame body');
  const spec = BY_CODE.get(body[0]);
  if (!spec) throw new ProtocolError('BAD_ENCODING', `unknown message type ${body[0]}`);
  let map;
  try {
    map = decoder.decode(body.subarray(1));
  } catch (e) {
    throw malformed(spec.name, 'not valid CBOR');
  }
  return { type: spec.name, ...fromWire(spec.name, spec.fields, map) };
}

/** A whole frame: the 8-byte header (length, flags 0), then the body. */
export function encodeFrame(message) {
  const body = encodeBody(message);
  const frame = new Uint8Array(HEADER_BYTES + body.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, body.length);
  view.setUint32(4, 0);
  frame.set(body, HEADER_BYTES);
  return frame;
}

/**
 * Decodes one frame carried by one WebSocket binary message (an ArrayBuffer or a byte view). The
 * header's length must be the message length minus 8, no unknown critical flag may be set, and the
 * body may not exceed `maxFrame` bytes.
 */
export function decodeFrame(data, maxFrame = DEFAULT_MAX_FRAME) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.length < HEADER_BYTES) throw new ProtocolError('BAD_ENCODING', 'frame shorter than its header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = view.getUint32(0);
  const flags = view.getUint32(4);
  if (length > maxFrame) throw new ProtocolError('BAD_ENCODING', `frame of ${length} bytes exceeds ${maxFrame}`);
  if (length !== bytes.length - HEADER_BYTES) {
    throw new ProtocolError('BAD_ENCODING', 'frame length does not match the WebSocket message');
  }
  if ((flags & CRITICAL_FLAGS) !== 0) throw new ProtocolError('BAD_ENCODING', 'unknown critical frame flag');
  return decodeBody(bytes.subarray(HEADER_BYTES));
}
