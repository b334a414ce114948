package dev.entanglement.benchmarks;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.r2dbc.R2dbcStateStore;
import dev.entanglement.store.StateStore;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import io.r2dbc.h2.H2ConnectionConfiguration;
import io.r2dbc.h2.H2ConnectionFactory;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Result;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import tools.jackson.databind.json.JsonMapper;

/**
 * Store throughput: commits per second through {@link EntanglementNode#publish} with an {@link
 * R2dbcStateStore}, on embedded H2 (a file in a temp dir) and on PostgreSQL; an end-to-end harness
 * (not JMH).
 *
 * <p>A node with no link publishes {@code publishes} updates over {@code keys} keys ({@link
 * Payload.Item}), keeping up to {@code concurrency} publish Monos outstanding ({@code
 * Flux.flatMap(…, concurrency)}); each Mono completes once its commit is durable, so group commit
 * can put many commits in one transaction. The store is wrapped in a counting decorator that counts
 * {@code write} calls (one transaction each) and the records in them. {@code warmup} publishes run
 * first and are not counted.
 *
 * <p>Baselines, in the same run and on the same database, with plain R2DBC on one connection (as
 * the store uses) and the store's own upsert statement, into a table of the same shape as
 * {@code ent_object} ({@code bench_object}: type, key, owner, epoch, serial, committed_at, deleted,
 * attributes as JSON text), the same rows in the same order:
 *
 * <ul>
 *   <li><b>tx per row</b>: one transaction per row (what a store without group commit does);
 *   <li><b>tx per 256 rows</b>: one transaction of {@code batch} statements (the best case for
 *       this write path).
 * </ul>
 *
 * <p>PostgreSQL ({@code pgUrl}, default {@code r2dbc:postgresql://postgres@127.0.0.1:5432/test}):
 * the harness drops and recreates the store's tables ({@code ent_owner}, {@code ent_object}, {@code
 * ent_watermark}, {@code ent_schema}) and {@code bench_object} at the start; it is skipped with a
 * message when the server is unreachable.
 *
 * <p>Run (from the repository root):
 *
 * <pre>
 * mvn -B -q -o -pl benchmarks -am package -DskipTests
 * java -cp benchmarks/target/benchmarks.jar dev.entanglement.benchmarks.StoreThroughputBenchmark
 * </pre>
 *
 * <p>Options ({@code name=value}): {@code publishes} (20000), {@code keys} (1000), {@code
 * concurrency} (256), {@code batch} (256), {@code warmup} (2000), {@code rowTxRows} rows for the
 * tx-per-row baseline (20000; lower it if a slow disk makes that run long), {@code databases}
 * ({@code h2,postgresql}), {@code pgUrl}.
 */
public final class StoreThroughputBenchmark {

  private StoreThroughputBenchmark() {}

  static int publishes;
  static int keys;
  static int concurrency;
  static int batch;
  static int warmup;
  static int rowTxRows;
  static final JsonMapper JSON = JsonMapper.builder().build();

  public static void main(String[] args) throws Exception {
    Options o =
        Options.parse(
            args, "publishes", "keys", "concurrency", "batch", "warmup", "rowTxRows", "databases",
            "pgUrl");
    publishes = o.integer("publishes", 20_000);
    keys = o.integer("keys", 1_000);
    concurrency = o.integer("concurrency", 256);
    batch = o.integer("batch", 256);
    warmup = o.integer("warmup", 2_000);
    rowTxRows = o.integer("rowTxRows", 20_000);
    String pgUrl = o.string("pgUrl", "r2dbc:postgresql://postgres@127.0.0.1:5432/test");
    System.out.printf(
        Locale.ROOT,
        "StoreThroughputBenchmark %s%n  publishes=%d keys=%d concurrency=%d batch=%d warmup=%d"
            + " rowTxRows=%d java=%s cpus=%d%n",
        ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME),
        publishes,
        keys,
        concurrency,
        batch,
        warmup,
        rowTxRows,
        System.getProperty("java.version"),
        Runtime.getRuntime().availableProcessors());
    for (String db : o.list("databases", "h2,postgresql")) {
      switch (db.trim()) {
        case "h2" -> runH2();
        case "postgresql" -> runPg(pgUrl);
        default -> throw new IllegalArgumentException("databases: h2 or postgresql, got " + db);
      }
    }
    System.out.flush();
    System.exit(0);
  }

  // ------------------------------------------------------------------ databases

  static void runH2() throws Exception {
    Path dir = Files.createTempDirectory("store-bench");
    try {
      R2dbcStateStore store = R2dbcStateStore.h2File(dir.resolve("node"));
      ConnectionFactory base =
          new H2ConnectionFactory(
              H2ConnectionConfiguration.builder()
                  .file(dir.resolve("baseline").toAbsolutePath() + ";WRITE_DELAY=0")
                  .build());
      String upsert =
          "MERGE INTO bench_object (obj_type, obj_key, owner, epoch, serial, committed_at, deleted,"
              + " attributes) KEY (obj_type, obj_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
      String ddl =
          "CREATE TABLE bench_object (obj_type VARCHAR(200) NOT NULL, obj_key VARCHAR(2000) NOT NULL,"
              + " owner VARCHAR(200) NOT NULL, epoch BIGINT NOT NULL, serial BIGINT NOT NULL,"
              + " committed_at BIGINT NOT NULL, deleted BOOLEAN NOT NULL, attributes CLOB NOT NULL,"
              + " PRIMARY KEY (obj_type, obj_key))";
      run("H2 file (" + dir + ", WRITE_DELAY=0)", store, base, ddl, upsert);
    } finally {
      try (Stream<Path> w = Files.walk(dir)) {
        w.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
  }

  static void runPg(String url) throws Exception {
    ConnectionFactory base = ConnectionFactories.get(url);
    try {
      Connection c = Mono.from(base.create()).block(Duration.ofSeconds(5));
      for (String t : List.of("ent_owner", "ent_object", "ent_watermark", "ent_schema", "bench_object")) {
        exec(c, "DROP TABLE IF EXISTS " + t).block(Duration.ofSeconds(30));
      }
      Mono.from(c.close()).block(Duration.ofSeconds(5));
    } catch (Exception e) {
      System.out.printf("%n=== PostgreSQL (%s): SKIPPED, unreachable: %s%n", url, e);
      return;
    }
    String upsert =
        "INSERT INTO bench_object (obj_type, obj_key, owner, epoch, serial, committed_at, deleted,"
            + " attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (obj_type, obj_key)"
            + " DO UPDATE SET owner = EXCLUDED.owner, epoch = EXCLUDED.epoch, serial ="
            + " EXCLUDED.serial, committed_at = EXCLUDED.committed_at, deleted = EXCLUDED.deleted,"
            + " attributes = EXCLUDED.attributes";
    String ddl =
        "CREATE TABLE bench_object (obj_type TEXT NOT NULL, obj_key TEXT NOT NULL, owner TEXT NOT"
            + " NULL, epoch BIGINT NOT NULL, serial BIGINT NOT NULL, committed_at BIGINT NOT NULL,"
            + " deleted BOOLEAN NOT NULL, attributes TEXT NOT NULL, PRIMARY KEY (obj_type, obj_key))";
    run("PostgreSQL (" + url + ")", R2dbcStateStore.postgresql(url), base, ddl, upsert);
  }

  // ------------------------------------------------------------------ one database

  static void run(String name, StateStore inner, ConnectionFactory base, String ddl, String upsert)
      throws Exception {
    System.out.printf("%n=== %s ===%n", name);
    String[] ids = Payload.ids(keys, 3);
    String[] labels = Payload.labels(keys);

    // ---- ours: publish through the node
    CountingStore store = new CountingStore(inner);
    EntanglementNode node =
        EntanglementNode.builder()
            .id("store-bench")
            .owner(OwnerId.of("store-bench-owner"))
            .registry(Payload.registry())
            .store(store)
            .build();
    node.start().block(Duration.ofSeconds(60));
    publish(node, ids, labels, 0, warmup);
    long w0 = store.writes.get();
    long r0 = store.objects.get();
    long c0 = store.changes.get();
    long p0 = store.owners.get();
    long t0 = System.nanoTime();
    publish(node, ids, labels, warmup, publishes);
    double oursS = (System.nanoTime() - t0) / 1e9;
    long tx = store.writes.get() - w0;
    long objs = store.objects.get() - r0;
    long changes = store.changes.get() - c0;
    long ownerRecs = store.owners.get() - p0;
    long maxBatch = store.maxObjects.get();
    node.close().block(Duration.ofSeconds(30));
    store.close().block(Duration.ofSeconds(30));
    double oursRate = publishes / oursS;
    System.out.printf(
        Locale.ROOT,
        "ours (publish, <=%d outstanding): %,d commits in %.2f s = %,.0f commits/s;"
            + " %,d store transactions (%.1f commits/tx, %,d object records = %.3f per commit,"
            + " %,d changes in all of which %,d PutOwner, largest batch %d objects)%n",
        concurrency,
        publishes,
        oursS,
        oursRate,
        tx,
        (double) publishes / Math.max(1, tx),
        objs,
        (double) objs / publishes,
        changes,
        ownerRecs,
        maxBatch);

    // ---- baselines: plain R2DBC
    Connection c = Mono.from(base.create()).block(Duration.ofSeconds(10));
    exec(c, "DROP TABLE IF EXISTS bench_object").then(exec(c, ddl)).block(Duration.ofSeconds(30));
    // warm the statement path a little
    insertRows(c, upsert, ids, labels, 0, Math.min(warmup, 500), 1);
    long b0 = System.nanoTime();
    insertRows(c, upsert, ids, labels, 0, rowTxRows, 1);
    double rowS = (System.nanoTime() - b0) / 1e9;
    double rowRate = rowTxRows / rowS;
    System.out.printf(
        Locale.ROOT,
        "baseline tx per row: %,d rows in %.2f s = %,.0f rows/s (%,d transactions)%n",
        rowTxRows,
        rowS,
        rowRate,
        rowTxRows);
    long g0 = System.nanoTime();
    insertRows(c, upsert, ids, labels, 0, publishes, batch);
    double grpS = (System.nanoTime() - g0) / 1e9;
    double grpRate = publishes / grpS;
    System.out.printf(
        Locale.ROOT,
        "baseline tx per %d rows: %,d rows in %.2f s = %,.0f rows/s (%,d transactions)%n",
        batch,
        publishes,
        grpS,
        grpRate,
        (publishes + batch - 1) / batch);
    Mono.from(c.close()).block(Duration.ofSeconds(10));
    System.out.printf(
        Locale.ROOT,
        "RATIOS %s: ours / tx-per-row = %.2fx ; ours / tx-per-%d = %.2fx%n",
        name,
        oursRate / rowRate,
        batch,
        oursRate / grpRate);
  }

  static void publish(EntanglementNode node, String[] ids, String[] labels, int from, int count) {
    Flux.range(from, count)
        .flatMap(
            i -> {
              int k = i % keys;
              return node.publish(Payload.item(ids[k], i, k, labels[k]));
            },
            concurrency)
        .then()
        .block(Duration.ofSeconds(300));
  }

  /** Upserts rows {@code from .. from+count-1} (key = i % keys), {@code perTx} per transaction. */
  static void insertRows(
      Connection c, String upsert, String[] ids, String[] labels, int from, int count, int perTx) {
    long epoch = System.currentTimeMillis();
    Flux.range(0, (count + perTx - 1) / perTx)
        .concatMap(
            t -> {
              int start = from + t * perTx;
              int end = Math.min(from + count, start + perTx);
              return Mono.from(c.beginTransaction())
                  .thenMany(
                      Flux.range(start, end - start)
                          .concatMap(
                              i -> {
                                int k = i % keys;
                                Payload.Item item = Payload.item(ids[k], i, k, labels[k]);
                                String attrs = JSON.writeValueAsString(JSON.valueToTree(item));
                                return Flux.from(
                                        c.createStatement(upsert)
                                            .bind(0, Payload.ITEM.name())
                                            .bind(1, ids[k])
                                            .bind(2, "store-bench-owner")
                                            .bind(3, epoch)
                                            .bind(4, (long) i + 1)
                                            .bind(5, System.currentTimeMillis())
                                            .bind(6, false)
                                            .bind(7, attrs)
                                            .execute())
                                    .flatMap(Result::getRowsUpdated)
                                    .then();
                              }))
                  .then(Mono.from(c.commitTransaction()));
            },
            1)
        .then()
        .block(Duration.ofSeconds(600));
  }

  static Mono<Void> exec(Connection c, String sql) {
    return Flux.from(c.createStatement(sql).execute()).flatMap(Result::getRowsUpdated).then();
  }

  /** Counts transactions (write calls) and records. */
  static final class CountingStore implements StateStore {
    final StateStore inner;
    final AtomicLong writes = new AtomicLong();
    final AtomicLong changes = new AtomicLong();
    final AtomicLong objects = new AtomicLong();
    final AtomicLong owners = new AtomicLong();
    final AtomicLong maxObjects = new AtomicLong();

    CountingStore(StateStore inner) {
      this.inner = inner;
    }

    @Override
    public Mono<StoredData> load() {
      return inner.load();
    }

    @Override
    public Mono<Void> write(WriteBatch b) {
      writes.incrementAndGet();
      changes.addAndGet(b.size());
      long n = b.changes().stream().filter(ch -> ch instanceof WriteBatch.PutObject).count();
      objects.addAndGet(n);
      owners.addAndGet(b.changes().stream().filter(ch -> ch instanceof WriteBatch.PutOwner).count());
      maxObjects.accumulateAndGet(n, Math::max);
      return inner.write(b);
    }

    @Override
    public Mono<Void> close() {
      return inner.close();
    }
  }

}
