package dev.entanglement.store;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;
import reactor.core.publisher.Mono;

/**
 * A store in the JVM's memory: state survives closing and rebuilding a node with the same store
 * instance (tests, simulations), not a process crash. Thread-safe.
 */
public final class InMemoryStateStore implements StateStore {
  private final Map<String, StoredData.OwnerRecord> owners = new LinkedHashMap<>();
  private final Map<String, StoredData.ObjectRecord> objects = new LinkedHashMap<>();
  private final Map<String, StoredData.WatermarkRecord> watermarks = new LinkedHashMap<>();
  private final Map<String, StoredData.PurgeRecord> purges = new LinkedHashMap<>();
  private long batches;

  @Override
  public synchronized Mono<StoredData> load() {
    return Mono.just(
        new StoredData(
            new ArrayList<>(owners.values()),
            new ArrayList<>(objects.values()),
            new ArrayList<>(watermarks.values()),
            new ArrayList<>(purges.values())));
  }

  @Override
  public Mono<Void> write(WriteBatch batch) {
    return Mono.fromRunnable(() -> apply(batch));
  }

  private synchronized void apply(WriteBatch batch) {
    batches++;
    for (WriteBatch.Change c : batch.changes()) {
      if (c instanceof WriteBatch.PutOwner p) {
        owners.put(p.owner().owner(), p.owner());
      } else if (c instanceof WriteBatch.PutObject p) {
        objects.put(p.object().type() + "/" + p.object().key(), p.object());
      } else if (c instanceof WriteBatch.RemoveObject r) {
        objects.remove(r.type() + "/" + r.key());
      } else if (c instanceof WriteBatch.PutWatermark w) {
        watermarks.put(w.watermark().owner(), w.watermark());
      } else if (c instanceof WriteBatch.PutPurge p) {
        purges.put(p.purge().owner(), p.purge());
      } else if (c instanceof WriteBatch.RemoveOwner r) {
        objects.values().removeIf(o -> o.owner().equals(r.owner()) && o.epoch() <= r.epoch());
        watermarks.remove(r.owner());
        purges.computeIfPresent(r.owner(), (o, p) -> p.epoch() <= r.epoch() ? null : p);
        owners.put(r.owner(), new StoredData.OwnerRecord(r.owner(), r.epoch(), 0, false));
      }
    }
  }

  /** Batches written so far (group commit makes this smaller than the number of commits). */
  public synchronized long batches() {
    return batches;
  }

  @Override
  public Mono<Void> close() {
    return Mono.empty();
  }
}
