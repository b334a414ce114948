package dev.entanglement.store;

import reactor.core.publisher.Mono;

/**
 * Where a node keeps its state across restarts. Contract for implementations:
 *
 * <ul>
 *   <li>{@link #load()} is called once, before anything is written, and returns everything written
 *       so far;
 *   <li>{@link #write(WriteBatch)} is called with one batch at a time, in order; the returned
 *       {@code Mono} completes only when the batch is durable (a crash after that loses nothing of
 *       it), and a batch is applied whole or not at all;
 *   <li>within a batch, later records replace earlier ones with the same identity (owner, object
 *       key, watermark owner, purge owner), and removals apply in order with upserts.
 * </ul>
 */
public interface StateStore {

  /** Everything stored. */
  Mono<StoredData> load();

  /** Makes a batch durable. */
  Mono<Void> write(WriteBatch batch);

  /** Releases connections. */
  Mono<Void> close();
}
