/**
 * Network transports for Entanglement Reactive on Reactor Netty: TCP with mutual TLS, WebSocket,
 * and Unix domain sockets. Transports move frames only; every protocol decision is the engine's.
 *
 * <p>Stream framing (TCP, Unix sockets): {@code [u32 length][u32 flags][body]}, big-endian, where
 * {@code length} counts the body only. WebSocket carries the same header and body in one binary
 * message. Flag bits 0–15 are critical: a frame with a critical bit the receiver does not
 * understand is refused. Bits 16–31 are ignored when unknown. No flag is defined yet.
 */
@NullMarked
package dev.entanglement.netty;

import org.jspecify.annotations.NullMarked;
