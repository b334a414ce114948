/**
 * The transport SPI: a {@link dev.entanglement.transport.Link} is an authenticated, ordered, duplex
 * stream of frame bodies between two nodes. Transports move bytes only; they know nothing of
 * objects, owners or policy.
 */
@NullMarked
package dev.entanglement.transport;

import org.jspecify.annotations.NullMarked;
