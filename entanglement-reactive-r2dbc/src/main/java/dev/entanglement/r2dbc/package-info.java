/** A {@link dev.entanglement.store.StateStore} on R2DBC: embedded H2 or PostgreSQL. */
@NullMarked
package dev.entanglement.r2dbc;

import org.jspecify.annotations.NullMarked;
