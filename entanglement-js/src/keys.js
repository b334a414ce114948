// Object keys and identifiers.

/**
 * The canonical string of a key value, as PROTOCOL.md §4.1 defines it: a string as itself, a
 * number or boolean as its string form, a composite key (an object or array) as compact JSON with
 * property names sorted at every depth. Java writes a non-integer double key such as 1.0 as "1.0"
 * where JavaScript writes "1": use strings or integers for keys shared with Java nodes.
 */
export function canonicalKey(keyValue) {
  if (keyValue === null || keyValue === undefined) throw new TypeError('key must not be null');
  if (typeof keyValue === 'string') return keyValue;
  if (typeof keyValue === 'number' || typeof keyValue === 'boolean' || typeof keyValue === 'bigint') {
    return String(keyValue);
  }
  return JSON.stringify(sorted(keyValue));
}

function sorted(value) {
  if (Array.isArray(value)) return value.map(sorted);
  if (value === null || typeof value !== 'object') return value;
  const out = {};
  for (const k of Object.keys(value).sort()) out[k] = sorted(value[k]);
  return out;
}

/**
 * A random (version 4) UUID. Built from crypto.getRandomValues, which browsers offer on plain
 * http pages too (crypto.randomUUID needs a secure context).
 */
export function randomUuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
