/**
 * Entanglement Reactive: latest-state object synchronization on Project Reactor.
 *
 * <p>Start at {@link dev.entanglement.EntanglementNode}. Objects are declared as {@link
 * dev.entanglement.SyncType}s grouped in {@link dev.entanglement.Registry}s; each object has one
 * owner, who commits its state; every other node watches it as a {@code Flux} of {@link
 * dev.entanglement.Snapshot}s and proposes changes that come back as an {@link
 * dev.entanglement.Outcome}.
 */
@NullMarked
package dev.entanglement;

import org.jspecify.annotations.NullMarked;
