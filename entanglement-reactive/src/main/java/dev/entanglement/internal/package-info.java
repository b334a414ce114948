/**
 * Internal building blocks. This package <em>must not</em> be used outside this project; it has no
 * API compatibility guarantees. It is public only so that the engine, the transports and the
 * benchmarks can share it.
 */
@NullMarked
package dev.entanglement.internal;

import org.jspecify.annotations.NullMarked;
