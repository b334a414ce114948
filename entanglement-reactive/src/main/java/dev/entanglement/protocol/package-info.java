/**
 * The wire codec: message records and their CBOR encoding. This package depends on Jackson only; it
 * must never depend on Reactor or on a transport. One frame body is one message: a one-byte message
 * type followed by the message's fields as a CBOR map.
 */
@NullMarked
package dev.entanglement.protocol;

import org.jspecify.annotations.NullMarked;
