package dev.entanglement.store;

import reactor.core.publisher.Mono;

/**
 * Where a node keeps its state across restarts. Contract for implementations:
 *
 * <ul>
 *   <li>{@link #load()} is called before anything is written, and returns everything written so
 *       far; if the node then fails to start, it calls {@link #close()}, and a later start calls
 *       {@code load()} again;
 *   <li>{@link #write(WriteBatch)} is called with one batch at a time, in order; the returned
 *       {@code Mono} completes only when the batch is durable (a crash after that loses nothing of
 *       it), and a batch is applied whole or not at all;
 *   <li>within a batch, later records replace earlier ones with the same identity (owner, object
 *       key, watermark owner, purge owner), and removals apply in order with upserts;
 *   <li>a failed write applies nothing of its batch. The node retries the batch (with every change
 *       made since) every second for as long as it runs, unless the failure is a {@link
 *       PermanentStoreException}: then the node writes nothing more. Every local commit waiting
 *       to be written fails its caller and never takes effect, and so does every later one; other
 *       changes (states received from peers, owners added or removed) take effect in memory only,
 *       and a node restarted on a repaired store catches up on them from its peers.
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
