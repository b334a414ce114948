// Public entry point of entanglement-js.
export { EntanglementClient, EntanglementError, DEFAULTS } from './client.js';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
export { canonicalKey } from './keys.js';
export {
  encodeBody, decodeBody, encodeFrame, decodeFrame, ProtocolError, PROTOCOL_VERSION, HEADER_BYTES, DEFAULT_MAX_FRAME,
} from './codec.js';
