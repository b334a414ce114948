/**
 * The persistence SPI: a {@link dev.entanglement.store.StateStore} keeps a node's owners, objects,
 * tombstones and watermarks across restarts. The engine writes through one ordered queue of
 * batches; a local commit is acknowledged and flooded only once its batch is durable.
 */
@NullMarked
package dev.entanglement.store;

import org.jspecify.annotations.NullMarked;
