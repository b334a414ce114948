package dev.entanglement.r2dbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.entanglement.store.PermanentStoreException;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import io.r2dbc.h2.H2ConnectionConfiguration;
import io.r2dbc.h2.H2ConnectionFactory;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** The store suite on embedded H2 (a file, as by default). */
class H2StateStoreTest extends StoreContract {
  @TempDir Path dir;
  private int databases;

  @Override
  R2dbcStateStore emptyStore() {
    databases++;
    return sameDatabase();
  }

  @Override
  R2dbcStateStore sameDatabase() {
    return R2dbcStateStore.h2File(dir.resolve("store-" + databases));
  }

  @Override
  void execute(String sql) {
    Mono.usingWhen(direct().create(),
            c -> Flux.from(c.createStatement(sql).execute()).flatMap(r -> r.getRowsUpdated()).then(),
            c -> c.close())
        .block(WAIT);
  }

  @Override
  Long queryLong(String sql) {
    return Mono.usingWhen(direct().create(),
            c -> Flux.from(c.createStatement(sql).execute())
                .flatMap(r -> r.map(row -> ((Number) row.get(0)).longValue())).next(),
            c -> c.close())
        .block(WAIT);
  }

  private H2ConnectionFactory direct() {
    return new H2ConnectionFactory(H2ConnectionConfiguration.builder()
        .file(dir.resolve("store-" + databases).toAbsolutePath().toString()).build());
  }

  @Test
  void aConnectionLostUnderTheStoreIsReplacedAtTheNextWrite() {
    R2dbcStateStore store = emptyStore();
    store.load().block(WAIT);
    store.write(watermark(1)).block(WAIT);
    // The database closes under the store, as a restarted server would: its connection is dead.
    H2ConnectionFactory other = new H2ConnectionFactory(H2ConnectionConfiguration.builder()
        .file(dir.resolve("store-" + databases).toAbsolutePath() + ";WRITE_DELAY=0").build());
    Mono.from(other.create())
        .flatMap(c -> Flux.from(c.createStatement("SHUTDOWN").execute()).then())
        .onErrorResume(e -> Mono.empty()) // the shutdown may end its own connection mid-answer
        .block(WAIT);
    RuntimeException lost =
        assertThrows(RuntimeException.class, () -> store.write(watermark(2)).block(WAIT), "on the dead connection");
    assertFalse(lost instanceof PermanentStoreException, "a lost connection is retried: " + lost);
    store.write(watermark(3)).block(WAIT); // the engine's retry: a new connection
    assertEquals(List.of(new StoredData.WatermarkRecord("other", 1, 3)), store.load().block(WAIT).watermarks());
    store.close().block(WAIT);
  }

  @Test
  void aDatabaseOfSchemaVersion1IsUpgradedInPlace() throws java.io.IOException {
    String v1;
    try (java.io.InputStream in =
        R2dbcStateStore.class.getResourceAsStream("schema/h2/V1__schema.sql")) {
      v1 = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
    }
    emptyStore(); // names a new database
    List<String> statements = new java.util.ArrayList<>(
        java.util.Arrays.stream(v1.split(";")).map(String::strip)
            .map(s -> s.lines().filter(l -> !l.strip().startsWith("--")).reduce("", (a, b) -> a + "\n" + b).strip())
            .filter(s -> !s.isEmpty()).toList());
    statements.add("CREATE TABLE ent_schema (version INT NOT NULL)");
    statements.add("INSERT INTO ent_schema (version) VALUES (1)");
    statements.add("INSERT INTO ent_watermark (owner, epoch, serial) VALUES ('other', 1, 5)");
    statements.forEach(this::execute);

    R2dbcStateStore store = sameDatabase();
    StoredData before = store.load().block(WAIT);
    assertEquals(List.of(new StoredData.WatermarkRecord("other", 1, 5)), before.watermarks(), "data kept");
    assertEquals(List.of(), before.purges());
    store.write(new WriteBatch().add(new WriteBatch.PutPurge(new StoredData.PurgeRecord("other", 1, 3))))
        .block(WAIT);
    assertEquals(List.of(new StoredData.PurgeRecord("other", 1, 3)), store.load().block(WAIT).purges());
    store.close().block(WAIT);
  }

  /** A database that refuses every login, as during a password rotation, counting the attempts. */
  private static final class RefusingLogins implements io.r2dbc.spi.ConnectionFactory {
    final java.util.concurrent.atomic.AtomicInteger attempts = new java.util.concurrent.atomic.AtomicInteger();

    @Override
    public org.reactivestreams.Publisher<? extends io.r2dbc.spi.Connection> create() {
      // PostgreSQL's driver reports a failed login as permission denied.
      return Mono.defer(() -> {
        attempts.incrementAndGet();
        return Mono.error(new io.r2dbc.spi.R2dbcPermissionDeniedException("password authentication failed"));
      });
    }

    @Override
    public io.r2dbc.spi.ConnectionFactoryMetadata getMetadata() {
      return () -> "PostgreSQL";
    }
  }

  @Test
  void aConnectionRefusedAtLoginIsNotPermanent() {
    RefusingLogins refusing = new RefusingLogins();
    R2dbcStateStore store = R2dbcStateStore.of(refusing);
    RuntimeException e = assertThrows(RuntimeException.class, () -> store.write(watermark(1)).block(WAIT));
    assertInstanceOf(io.r2dbc.spi.R2dbcPermissionDeniedException.class, e, "retried by the node: " + e);
    store.close().block(WAIT);
    assertEquals(1, refusing.attempts.get(), "neither replacing the failed connection nor close() connects");
  }

  @Test
  void closingAStoreThatNeverConnectedConnectsToNothing() {
    RefusingLogins refusing = new RefusingLogins();
    R2dbcStateStore.of(refusing).close().block(WAIT);
    assertEquals(0, refusing.attempts.get());
  }

  /**
   * A database whose statements on {@code ent_watermark} get no answer while {@link #hang} is set,
   * whose connections never open while {@link #hangOpening} is, and never finish closing while
   * {@link #hangClosing} is, as on a half-open connection; it counts the connections closed.
   */
  private static final class Unanswering implements io.r2dbc.spi.ConnectionFactory {
    private final io.r2dbc.spi.ConnectionFactory database;
    final java.util.concurrent.atomic.AtomicBoolean hang = new java.util.concurrent.atomic.AtomicBoolean();
    final java.util.concurrent.atomic.AtomicBoolean hangOpening = new java.util.concurrent.atomic.AtomicBoolean();
    final java.util.concurrent.atomic.AtomicBoolean hangClosing = new java.util.concurrent.atomic.AtomicBoolean();
    final java.util.concurrent.atomic.AtomicInteger closed = new java.util.concurrent.atomic.AtomicInteger();

    Unanswering(io.r2dbc.spi.ConnectionFactory database) {
      this.database = database;
    }

    @Override
    public org.reactivestreams.Publisher<? extends io.r2dbc.spi.Connection> create() {
      return Mono.defer(() -> hangOpening.get() ? Mono.never() : Mono.from(database.create())).map(c -> proxy(io.r2dbc.spi.Connection.class, c, (m, args) -> {
        if (m.getName().equals("close")) {
          closed.incrementAndGet();
          if (hangClosing.get()) {
            Mono.from(c.close()).subscribe(); // closed here, but the caller never learns it
            return Mono.never();
          }
        }
        Object result = m.invoke(c, args);
        return result instanceof io.r2dbc.spi.Statement s ? statement(s, (String) args[0]) : result;
      }));
    }

    private io.r2dbc.spi.Statement statement(io.r2dbc.spi.Statement s, String sql) {
      return proxy(io.r2dbc.spi.Statement.class, s, new Call() {
        @Override
        public Object call(java.lang.reflect.Method m, Object[] args) throws Exception {
          if (m.getName().equals("execute") && hang.get() && sql.contains("ent_watermark")) {
            return Flux.never();
          }
          Object result = m.invoke(s, args);
          return result == s ? statement(s, sql) : result; // bind() and the like return the statement
        }
      });
    }

    @Override
    public io.r2dbc.spi.ConnectionFactoryMetadata getMetadata() {
      return database.getMetadata();
    }
  }

  private interface Call {
    Object call(java.lang.reflect.Method m, Object[] args) throws Exception;
  }

  private static <T> T proxy(Class<T> type, T target, Call call) {
    return type.cast(java.lang.reflect.Proxy.newProxyInstance(type.getClassLoader(), new Class<?>[] {type},
        (p, m, args) -> {
          try {
            return call.call(m, args);
          } catch (java.lang.reflect.InvocationTargetException e) {
            throw e.getCause();
          }
        }));
  }

  @Test
  void anOperationThatNeverEndsFailsInTimeAndTheNextRunsOnANewConnection() {
    R2dbcStateStore migrated = emptyStore(); // a new database, its schema made with no time limit
    migrated.load().block(WAIT);
    migrated.close().block(WAIT);
    H2ConnectionFactory h2 = new H2ConnectionFactory(H2ConnectionConfiguration.builder()
        .file(dir.resolve("store-" + databases).toAbsolutePath() + ";WRITE_DELAY=0").build());
    // Kept open, so that the database stays open: a new connection does not reopen its file, which
    // could take longer than the limit on a slow machine.
    io.r2dbc.spi.Connection keptOpen = Mono.from(h2.create()).block(WAIT);
    Unanswering database = new Unanswering(h2);
    R2dbcStateStore store = R2dbcStateStore.of(database).withOperationTimeout(java.time.Duration.ofMillis(500));
    store.load().block(WAIT);
    store.write(watermark(1)).block(WAIT);
    database.hang.set(true);
    Throwable e = store.write(watermark(2)).then(Mono.<Throwable>empty()).onErrorResume(Mono::just).block(WAIT);
    assertInstanceOf(java.util.concurrent.TimeoutException.class, e, "retried by the node");
    assertEquals(1, database.closed.get(), "the connection it hung on is closed");
    database.hang.set(false);
    database.hangOpening.set(true);
    e = store.write(watermark(3)).then(Mono.<Throwable>empty()).onErrorResume(Mono::just).block(WAIT);
    assertInstanceOf(java.util.concurrent.TimeoutException.class, e, "a new connection that never opens");
    database.hangOpening.set(false);
    store.write(watermark(4)).block(WAIT); // the node's retry, on a new connection
    assertEquals(List.of(new StoredData.WatermarkRecord("other", 1, 4)), store.load().block(WAIT).watermarks());
    database.hangClosing.set(true);
    store.close().block(WAIT); // gives up on the close after the limit
    database.hangClosing.set(false);
    store.load().block(WAIT); // not held behind it
    store.close().block(WAIT);
    Mono.from(keptOpen.close()).block(WAIT);
  }

  private static WriteBatch watermark(long serial) {
    return new WriteBatch().add(new WriteBatch.PutWatermark(new StoredData.WatermarkRecord("other", 1, serial)));
  }
}
