/**
 * Internal to the R2DBC store. This package <em>must not</em> be used outside this project; it has
 * no API compatibility guarantees. It is public only because BlockHound loads its integration as a
 * service.
 */
@NullMarked
package dev.entanglement.r2dbc.internal;

import org.jspecify.annotations.NullMarked;
