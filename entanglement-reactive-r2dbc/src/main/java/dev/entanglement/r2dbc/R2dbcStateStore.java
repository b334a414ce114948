package dev.entanglement.r2dbc;

import dev.entanglement.store.PermanentStoreException;
import dev.entanglement.store.StateStore;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import io.r2dbc.h2.H2ConnectionConfiguration;
import io.r2dbc.h2.H2ConnectionFactory;
import io.r2dbc.h2.H2ConnectionOption;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.R2dbcBadGrammarException;
import io.r2dbc.spi.R2dbcDataIntegrityViolationException;
import io.r2dbc.spi.R2dbcPermissionDeniedException;
import io.r2dbc.spi.Readable;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Statement;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.Disposable;
import reactor.core.Disposables;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * A {@link StateStore} on R2DBC, for embedded H2 (a file or memory; the default, no set-up) or
 * PostgreSQL.
 *
 * <pre>{@code
 * StateStore store = R2dbcStateStore.h2File(Path.of("data/node"));
 * StateStore pg = R2dbcStateStore.postgresql("r2dbc:postgresql://app@db.example:5432/sync");
 * EntanglementNode node = EntanglementNode.builder().store(store)...build();
 * node.start().block();
 * }</pre>
 *
 * <p>Durability: every {@link #write} is one transaction on one connection, committed before the
 * returned {@code Mono} completes. The engine writes one batch at a time and folds the commits made
 * meanwhile into the next batch (group commit), so a burst of commits costs few transactions.
 *
 * <p>Failures: a batch whose statements the database refuses (bad grammar, such as a table changed
 * by hand; a data integrity violation; a permission denied) fails with a {@link
 * PermanentStoreException}, and the node stops writing; any other failure, opening a connection
 * included (a refused login may pass later), is retried by the node.
 *
 * <p>Connection: one, opened on first use, used by one operation at a time (load, batch, claim
 * renewal, close), in the order they were asked for. A failed open is not kept, and a connection on
 * which an operation failed is closed and replaced at the next use, so the store recovers when the
 * database comes back (restarted, failed over, or a dropped idle connection) as the engine retries.
 * Each round trip to the database has a time limit, 30 s by default ({@link #withOperationTimeout}):
 * one that never ends cannot hold the store's later operations.
 *
 * <p>Claim: one node writes a database. {@link #load()} takes the database's claim (table {@code
 * ent_claim}) for this store instance; every batch renews it at its start (which locks the claim
 * for the batch) and again at its end, in its own transaction; the store renews it every third of
 * its time to live while idle; {@link #close()} gives it up. While another instance holds an
 * unexpired claim, {@code load()} waits for it to lapse, about that claim's time to live and one
 * second, and then fails with a {@link PermanentStoreException}: a node started on a database
 * another running node uses does not start (two nodes on one database would each take the other's
 * owners as their own). A batch of an instance whose claim was taken (it was cut off from the
 * database longer than its time to live, and another instance started) fails with a {@link
 * PermanentStoreException}, and its node stops writing. Time is the database's clock. A node
 * restarted after a crash waits for its old claim to lapse. Default time to live 10 s ({@link
 * #withClaimTtl}). On PostgreSQL, a node that dies inside a batch leaves its server session, and
 * the lock on the claim, until the server drops the session, and a node starting meanwhile fails
 * as if the holder were alive: set {@code idle_in_transaction_session_timeout} below the time to
 * live.
 *
 * <p>Schema: created and upgraded on {@link #load()} by the versioned scripts shipped in this jar
 * ({@code dev/entanglement/r2dbc/schema/<database>/V<n>__*.sql}); the version applied is kept in
 * table {@code ent_schema}. Work runs on the stores' own threads, which are never interrupted,
 * since embedded H2 blocks its caller.
 */
public final class R2dbcStateStore implements StateStore {
  private static final Logger log = LoggerFactory.getLogger(R2dbcStateStore.class);
  /** Scripts shipped with this version, in order; the version is the list position + 1. */
  private static final List<String> SCRIPTS = List.of("V1__schema.sql", "V2__purges.sql", "V3__claim.sql");
  /**
   * Where the store's work runs, since embedded H2 blocks its caller: threads that are never
   * interrupted (daemons, made as needed, ended after a minute idle). Reactor's own schedulers
   * interrupt a task that is cancelled from another thread, as the time limit cancels a round trip,
   * and an interrupt during H2's file I/O closes the database's file for every connection.
   */
  private static final Scheduler BLOCKING = Schedulers.fromExecutor(uninterrupted(new StoreThreads()));

  /**
   * {@code pool} as a plain {@link java.util.concurrent.Executor}: given an executor service,
   * Reactor cancels a running task with an interrupt; given an executor, it only skips a task that
   * has not started.
   */
  private static java.util.concurrent.Executor uninterrupted(StoreThreads pool) {
    return pool::execute;
  }
  /** The claim's default time to live. */
  static final Duration DEFAULT_CLAIM_TTL = Duration.ofSeconds(10);
  /** The default of {@link #withOperationTimeout}. */
  static final Duration DEFAULT_OPERATION_TIMEOUT = Duration.ofSeconds(30);
  /**
   * The least time limit of an attempt to take the claim: the database's own bound on its wait for
   * the claim's lock (1 s on PostgreSQL, H2's default 2 s) must end it first, as "not taken".
   */
  private static final Duration CLAIM_LOCK_WAIT_LIMIT = Duration.ofSeconds(5);
  /** How often {@link #load()} tries again to take a claim another instance holds. */
  private static final Duration CLAIM_POLL = Duration.ofMillis(250);
  /**
   * Renews the claim of instance $1 for $2 ms from the transaction's start (CURRENT_TIMESTAMP, in
   * both databases): a batch adds the time it took. One row updated if held.
   */
  private static final String RENEW_CLAIM =
      "UPDATE ent_claim SET renewed_at = CURRENT_TIMESTAMP, ttl_ms = $2 WHERE id = 1 AND instance = $1";
  private static final String RELEASE_CLAIM = "UPDATE ent_claim SET instance = '' WHERE id = 1 AND instance = $1";

  private final ConnectionFactory factory;
  private final Dialect dialect;
  private final Duration claimTtl;
  /** The longest one round trip to the database may take: see {@link #withOperationTimeout}. */
  private final Duration operationTimeout;
  /** This store instance, as the claim names it. */
  private final String instance = java.util.UUID.randomUUID().toString();
  /** The connection in use, opened once on first use; replaced after a failure (see the class note). */
  private final AtomicReference<Opening> connection;
  /**
   * Operations run one at a time, in the order asked for (see {@link #inTurn}): whether one runs,
   * and those waiting for it (both guarded by {@code this}).
   */
  private boolean operating;

  private final java.util.ArrayDeque<Runnable> operationsWaiting = new java.util.ArrayDeque<>();
  /** Whether this instance took the claim and has not given it up. */
  private volatile boolean claimed;
  /** The idle renewal, running from a successful {@link #load()} until {@link #close()}. */
  private final AtomicReference<Disposable> renewal = new AtomicReference<>(Disposables.disposed());
  private volatile boolean closed;
  /** The schema scripts, read here so that no file is read on a non-blocking thread. */
  private final List<String> scripts;

  private R2dbcStateStore(
      ConnectionFactory factory, Dialect dialect, Duration claimTtl, Duration operationTimeout) {
    this.factory = factory;
    this.dialect = dialect;
    this.claimTtl = claimTtl;
    this.operationTimeout = operationTimeout;
    this.connection = new AtomicReference<>(new Opening());
    this.scripts = SCRIPTS.stream().map(s -> resource("schema/" + dialect.scripts + "/" + s)).toList();
  }

  private R2dbcStateStore(ConnectionFactory factory, Dialect dialect) {
    this(factory, dialect, DEFAULT_CLAIM_TTL, DEFAULT_OPERATION_TIMEOUT);
  }

  /**
   * A store on the same database whose claim lasts {@code ttl} without renewal (default 10 s): a
   * node restarted after a crash waits that long at most for its old claim to lapse, and a node
   * cut off from the database that long may have its claim taken. At least 300 ms.
   */
  public R2dbcStateStore withClaimTtl(Duration ttl) {
    if (ttl.compareTo(Duration.ofMillis(300)) < 0) {
      throw new IllegalArgumentException("claim time to live under 300 ms: " + ttl);
    }
    return new R2dbcStateStore(factory, dialect, ttl, operationTimeout);
  }

  /**
   * A store on the same database whose every round trip to the database must end within {@code
   * limit} (default 30 s): opening and closing the connection, each statement, each begin, commit
   * and rollback, and the wait for each next row of a query (on PostgreSQL, which streams rows, a
   * long read of a large database is not cut short; embedded H2 builds a whole result before its
   * first row, so there each table's read must end within the limit: raise it for a very large
   * store). An attempt to take the claim gets at least 5 s, so that the database's own bound on its
   * wait for the claim's lock ends it first. A round trip that takes longer fails its operation with a
   * {@link java.util.concurrent.TimeoutException}, and its connection is closed and replaced:
   * otherwise one that never ends (a half-open connection, a lock never released) would hold every
   * later operation of the store, and a later start. The node retries a batch that failed so; a
   * {@link #load()} that failed so fails the node's {@code start()}, which the application may call
   * again.
   */
  public R2dbcStateStore withOperationTimeout(Duration limit) {
    if (limit.isNegative() || limit.isZero()) {
      throw new IllegalArgumentException("operation time limit not positive: " + limit);
    }
    return new R2dbcStateStore(factory, dialect, claimTtl, limit);
  }

  /**
   * Embedded H2 in a file; {@code path} without the {@code .mv.db} extension. Commits are written
   * to the file when they commit ({@code WRITE_DELAY=0}; H2's default delays them by 500 ms), so an
   * acknowledged commit survives the process being killed. H2 does not force every commit to the
   * disk: for durability against a machine crash, use PostgreSQL.
   */
  public static R2dbcStateStore h2File(Path path) {
    return new R2dbcStateStore(
        new H2ConnectionFactory(
            H2ConnectionConfiguration.builder()
                .file(path.toAbsolutePath() + ";WRITE_DELAY=0")
                .build()),
        Dialect.H2);
  }

  /** Embedded H2 in memory, alive while the JVM runs (tests, simulations). */
  public static R2dbcStateStore h2InMemory(String name) {
    return new R2dbcStateStore(
        new H2ConnectionFactory(
            H2ConnectionConfiguration.builder()
                .inMemory(name)
                .property(H2ConnectionOption.DB_CLOSE_DELAY, "-1")
                .build()),
        Dialect.H2);
  }

  /** PostgreSQL, from an R2DBC URL such as {@code r2dbc:postgresql://user@host:5432/db}. */
  public static R2dbcStateStore postgresql(String url) {
    return new R2dbcStateStore(ConnectionFactories.get(url), Dialect.POSTGRESQL);
  }

  /** Any supported database from a connection factory (H2 or PostgreSQL). */
  public static R2dbcStateStore of(ConnectionFactory factory) {
    String name = factory.getMetadata().getName();
    Dialect d = name.toLowerCase(java.util.Locale.ROOT).contains("postgres") ? Dialect.POSTGRESQL : Dialect.H2;
    return new R2dbcStateStore(factory, d);
  }

  /**
   * One connection: opened on the first subscription to {@code connection} and kept; a failure to
   * open is not kept (the next subscription tries again). Closing closes what was opened, and
   * opens nothing.
   */
  private final class Opening {
    private volatile @Nullable Connection opened;
    /** Closed: a connection that finishes opening after {@link #close()} is closed at once. */
    private volatile boolean closing;
    private final java.util.concurrent.atomic.AtomicBoolean connectionClosed =
        new java.util.concurrent.atomic.AtomicBoolean();
    // Work continues on a thread that may block: embedded H2 does.
    final Mono<Connection> connection =
        Mono.<Connection>from(factory.create())
            .publishOn(BLOCKING)
            .doOnNext(c -> {
              opened = c;
              if (closing) {
                closeOnce(c).onErrorResume(e -> Mono.empty()).subscribe();
              }
            })
            .cache(c -> java.time.Duration.ofMillis(Long.MAX_VALUE), e -> java.time.Duration.ZERO,
                () -> java.time.Duration.ZERO);

    Mono<Void> close() {
      closing = true;
      Connection c = opened;
      return c == null ? Mono.empty() : closeOnce(c);
    }

    /**
     * After a round trip that timed out on embedded H2: rolls back, then closes. H2's rollback waits
     * for the statement still running in the session, where closing alone would end its
     * transaction under it; it is limited too. (Elsewhere the rollback's answer would queue behind
     * the one that never came: there the connection is only closed.)
     */
    Mono<Void> rollBackAndClose() {
      closing = true;
      Connection c = opened;
      return c == null
          ? Mono.empty()
          : limited(c.rollbackTransaction()).onErrorResume(e -> Mono.empty()).then(Mono.defer(() -> closeOnce(c)));
    }

    private Mono<Void> closeOnce(Connection c) {
      return connectionClosed.compareAndSet(false, true) ? Mono.from(c.close()) : Mono.empty();
    }
  }

  /** Runs {@code work} on the connection; after a failure the connection is closed and replaced. */
  private <T> Mono<T> withConnection(Function<Connection, Mono<T>> work) {
    return Mono.defer(() -> {
          Opening current = connection.get();
          return limited(current.connection)
              .flatMap(work)
              .onErrorResume(e -> {
                if (connection.compareAndSet(current, new Opening())) {
                  (e instanceof java.util.concurrent.TimeoutException && dialect == Dialect.H2
                          ? current.rollBackAndClose()
                          : current.close())
                      .onErrorResume(x -> Mono.empty())
                      .subscribe();
                }
                return Mono.error(e);
              });
        })
        .subscribeOn(BLOCKING);
  }

  /**
   * One round trip to the database, or a {@link java.util.concurrent.TimeoutException} once it took
   * longer than {@code limit}: it is then cancelled, and {@link #withConnection} closes its
   * connection. The failure comes from a thread that may block, as closing an embedded H2
   * connection does.
   */
  private <T> Mono<T> limited(Publisher<T> step, Duration limit) {
    return Mono.from(step).timeout(limit, Mono.<T>error(() -> tookTooLong(limit))
        .subscribeOn(BLOCKING));
  }

  private <T> Mono<T> limited(Publisher<T> step) {
    return limited(step, operationTimeout);
  }

  /** The rows of a query, failed as {@link #limited} if none came for the operation time limit. */
  private <T> Flux<T> limitedRows(Flux<T> rows) {
    return rows.timeout(operationTimeout, Flux.<T>error(() -> tookTooLong(operationTimeout))
        .subscribeOn(BLOCKING));
  }

  private static java.util.concurrent.TimeoutException tookTooLong(Duration limit) {
    return new java.util.concurrent.TimeoutException("a step on the database took longer than "
        + limit.toMillis() + " ms; its connection is closed, and a new one opened");
  }

  /**
   * {@code work}, once the operations asked for before it have ended, however they ended. It runs
   * whole even if its subscriber cancels: a batch or a renewal is never cut short on the connection.
   */
  private <T> Mono<T> inTurn(Mono<T> work) {
    return Mono.create(sink -> {
      Runnable start = () -> work.doFinally(signal -> nextInTurn())
          .subscribe(sink::success, sink::error, sink::success);
      boolean now;
      synchronized (this) {
        now = !operating;
        if (now) {
          operating = true;
        } else {
          operationsWaiting.add(start);
        }
      }
      if (now) {
        start.run();
      }
    });
  }

  private void nextInTurn() {
    Runnable next;
    synchronized (this) {
      next = operationsWaiting.poll();
      operating = next != null;
    }
    if (next != null) {
      next.run();
    }
  }

  @Override
  public Mono<StoredData> load() {
    return Mono.defer(() -> {
      closed = false;
      return inTurn(withConnection(c -> migrate(c).then(claim(c)).then(read(c))))
          .doOnSuccess(d -> renewWhileIdle());
    });
  }

  /** Takes the claim, waiting for another instance's to lapse: see the class note. */
  private Mono<Void> claim(Connection c) {
    return take(c).flatMap(taken -> taken ? Mono.<Void>empty() : holder(c).flatMap(h -> {
      log.info("store claim held by store instance {} (time to live {} ms): waiting for it to lapse,"
          + " as after a crash; a node that renews it keeps this one from starting", h.instance(), h.ttlMs());
      long deadline = System.nanoTime() + Duration.ofMillis(h.ttlMs()).plusSeconds(1).toNanos();
      return takeBy(c, deadline, h);
    }));
  }

  private Mono<Void> takeBy(Connection c, long deadlineNanos, Holder h) {
    return Mono.delay(CLAIM_POLL)
        .publishOn(BLOCKING)
        .then(take(c))
        .flatMap(taken -> {
          if (taken) {
            log.info("store claim taken after the claim of {} lapsed", h.instance());
            return Mono.<Void>empty();
          }
          if (System.nanoTime() - deadlineNanos > 0) {
            return Mono.error(new PermanentStoreException(
                "another node uses this database: store instance " + h.instance()
                    + " renews its claim (time to live " + h.ttlMs() + " ms); stop it, or give this node"
                    + " a database of its own"));
          }
          return takeBy(c, deadlineNanos, h);
        });
  }

  private record Holder(String instance, long ttlMs) {}

  /**
   * One attempt, in a transaction of its own whose wait for a lock on the claim is bounded: a lock
   * held means that the holder is writing a batch, so the claim is not taken this time.
   */
  private Mono<Boolean> take(Connection c) {
    Mono<Boolean> attempt = inTransaction(c,
        (dialect.boundLockWait == null ? Mono.<Void>empty() : run(c, dialect.boundLockWait))
            .then(updatesOne(c.createStatement(dialect.takeClaim).bind(0, instance).bind(1, claimTtl.toMillis()),
                max(operationTimeout, CLAIM_LOCK_WAIT_LIMIT))));
    return attempt
        .onErrorResume(R2dbcStateStore::isLockTimeout, e -> Mono.just(false))
        .doOnNext(taken -> claimed |= taken);
  }

  /** A wait for a lock that gave up: PostgreSQL's {@code lock_timeout}, H2's lock timeout. */
  private static boolean isLockTimeout(Throwable e) {
    return e instanceof io.r2dbc.spi.R2dbcException r
        && ("55P03".equals(r.getSqlState()) || "HYT00".equals(r.getSqlState()) || r.getErrorCode() == 50200);
  }

  private Mono<Holder> holder(Connection c) {
    return limitedRows(Flux.from(c.createStatement("SELECT instance, ttl_ms FROM ent_claim WHERE id = 1").execute())
            .flatMap(r -> r.map(row -> new Holder(row.get(0, String.class), row.get(1, Long.class)))))
        .next()
        .switchIfEmpty(Mono.error(() -> new IllegalStateException("table ent_claim has no row")));
  }

  /** Renews this instance's claim; false if it does not hold it (taken by another, or never taken). */
  private Mono<Boolean> renew(Connection c) {
    return renew(c, 0);
  }

  /** Renews for the time to live plus {@code extraMillis}, since the transaction began that long ago. */
  private Mono<Boolean> renew(Connection c, long extraMillis) {
    return updatesOne(c.createStatement(RENEW_CLAIM).bind(0, instance).bind(1, claimTtl.toMillis() + extraMillis));
  }

  private Mono<Void> renewOrFail(Connection c, long extraMillis) {
    return renew(c, extraMillis).flatMap(held -> held ? Mono.<Void>empty() : Mono.error(new PermanentStoreException(
        "this store holds no claim on its database (store instance " + instance + "): another node took"
            + " it over, or the store was not loaded; it writes nothing more")));
  }

  private Mono<Boolean> updatesOne(Statement s) {
    return updatesOne(s, operationTimeout);
  }

  private Mono<Boolean> updatesOne(Statement s, Duration limit) {
    return limited(Flux.from(s.execute()).flatMap(Result::getRowsUpdated).reduce(0L, Long::sum), limit)
        .map(n -> n > 0);
  }

  private static Duration max(Duration a, Duration b) {
    return a.compareTo(b) >= 0 ? a : b;
  }

  /**
   * Renews the claim every third of its time to live, in turn with the batches, until {@link
   * #close()} or until it finds the claim taken (the next batch then fails). A failed renewal is
   * tried again at the next tick. Stopping it never cuts a renewal short: each runs whole.
   */
  private void renewWhileIdle() {
    Duration period = claimTtl.dividedBy(3);
    Disposable task =
        Flux.interval(period, period, Schedulers.parallel())
            .onBackpressureDrop()
            .concatMap(tick -> inTurn(withConnection(this::renew))
                .onErrorResume(e -> {
                  log.debug("store claim not renewed this time: {}", e.toString());
                  return Mono.just(true);
                }))
            .takeUntil(held -> !held)
            .subscribe(held -> {
              if (!held) {
                log.error("store claim taken by another node: this node can write nothing more");
              }
            });
    Disposable previous = renewal.getAndSet(task);
    previous.dispose();
    if (closed) {
      task.dispose();
    }
  }

  private Mono<Void> migrate(Connection c) {
    return run(c, "CREATE TABLE IF NOT EXISTS ent_schema (version INT NOT NULL)")
        .then(
            limitedRows(Flux.from(c.createStatement("SELECT MAX(version) FROM ent_schema").execute())
                    .flatMap(r -> r.map(row -> Objects.requireNonNullElse(row.get(0, Integer.class), 0))))
                .next()
                .defaultIfEmpty(0))
        .flatMap(
            current -> {
              Mono<Void> steps = Mono.empty();
              for (int v = current + 1; v <= SCRIPTS.size(); v++) {
                int version = v;
                steps = steps.then(apply(c, version, scripts.get(version - 1)));
              }
              return steps;
            });
  }

  private Mono<Void> apply(Connection c, int version, String sql) {
    Flux<String> statements =
        Flux.fromStream(Arrays.stream(sql.split(";")).map(String::strip).filter(s -> !s.isEmpty()
            && !s.lines().allMatch(l -> l.isBlank() || l.strip().startsWith("--"))));
    return inTransaction(c, statements.concatMap(s -> run(c, s))
            .then(run(c, "INSERT INTO ent_schema (version) VALUES (" + version + ")")))
        .doOnSuccess(v -> log.info("store schema upgraded to version {} ({})", version, dialect));
  }

  private Mono<StoredData> read(Connection c) {
    Mono<List<StoredData.OwnerRecord>> owners =
        query(c, "SELECT owner, epoch, serial, local_owner FROM ent_owner",
            r -> new StoredData.OwnerRecord(
                r.get(0, String.class), r.get(1, Long.class), r.get(2, Long.class), r.get(3, Boolean.class)));
    Mono<List<StoredData.ObjectRecord>> objects =
        query(c, "SELECT obj_type, obj_key, owner, epoch, serial, committed_at, deleted, attributes FROM ent_object",
            r -> new StoredData.ObjectRecord(
                r.get(0, String.class), r.get(1, String.class), r.get(2, String.class),
                r.get(3, Long.class), r.get(4, Long.class), r.get(5, Long.class),
                r.get(6, Boolean.class), r.get(7, String.class)));
    Mono<List<StoredData.WatermarkRecord>> watermarks =
        query(c, "SELECT owner, epoch, serial FROM ent_watermark",
            r -> new StoredData.WatermarkRecord(r.get(0, String.class), r.get(1, Long.class), r.get(2, Long.class)));
    Mono<List<StoredData.PurgeRecord>> purges =
        query(c, "SELECT owner, epoch, serial FROM ent_purge",
            r -> new StoredData.PurgeRecord(r.get(0, String.class), r.get(1, Long.class), r.get(2, Long.class)));
    return owners.flatMap(o -> objects.flatMap(ob -> watermarks.flatMap(w -> purges.map(
        p -> new StoredData(o, ob, w, p)))));
  }

  private <T> Mono<List<T>> query(Connection c, String sql, Function<Readable, T> mapper) {
    return limitedRows(Flux.from(c.createStatement(sql).execute()).flatMap(r -> r.map(mapper))).collectList();
  }

  @Override
  public Mono<Void> write(WriteBatch batch) {
    return inTurn(withConnection(
            c -> {
              long begun = System.nanoTime();
              // Locks the claim for the batch; renewed again at its end, for the time the batch
              // took too, or a long batch would have let it lapse.
              return inTransaction(c, renewOrFail(c, 0)
                  .thenMany(Flux.fromIterable(batch.changes()).concatMap(ch -> execute(c, ch))
                      // The statements' own errors only: a refused login while reconnecting
                      // (permission denied too) passes once the database lets the node in.
                      .onErrorMap(R2dbcStateStore::refusesTheBatch, e -> new PermanentStoreException(
                          "the database refuses this batch: " + e.getMessage(), e)))
                  .then(Mono.defer(() -> renewOrFail(c, millisSince(begun)))));
            }))
        .publishOn(BLOCKING);
  }

  /**
   * {@code work} in a transaction on {@code c}: committed if it succeeds, else rolled back and its
   * error passed on. Its value, if any, once committed. A round trip that timed out is not rolled
   * back: the rollback's answer would queue behind the one that never came, and closing the
   * connection, which follows, ends the transaction.
   */
  private <T> Mono<T> inTransaction(Connection c, Mono<T> work) {
    return limited(c.beginTransaction())
        .then(work)
        .flatMap(v -> limited(c.commitTransaction()).thenReturn(v))
        .switchIfEmpty(Mono.defer(() -> limited(c.commitTransaction()).then(Mono.<T>empty())))
        .onErrorResume(e -> !(e instanceof java.util.concurrent.TimeoutException), e -> limited(c.rollbackTransaction())
            .onErrorResume(x -> Mono.empty()) // a dead connection cannot roll back
            .then(Mono.error(e)));
  }

  private static long millisSince(long nanoTime) {
    return java.util.concurrent.TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - nanoTime) + 1;
  }

  /**
   * Whether the database refused the statements themselves, which no retry of the same batch
   * changes; a lost connection, a timeout or a failed open may pass and are retried.
   */
  private static boolean refusesTheBatch(Throwable e) {
    return e instanceof R2dbcBadGrammarException
        || e instanceof R2dbcDataIntegrityViolationException
        || e instanceof R2dbcPermissionDeniedException;
  }

  private Mono<Void> execute(Connection c, WriteBatch.Change change) {
    if (change instanceof WriteBatch.PutOwner p) {
      StoredData.OwnerRecord o = p.owner();
      return run(c.createStatement(dialect.upsertOwner)
          .bind(0, o.owner()).bind(1, o.epoch()).bind(2, o.serial()).bind(3, o.local()));
    }
    if (change instanceof WriteBatch.PutObject p) {
      StoredData.ObjectRecord o = p.object();
      return run(c.createStatement(dialect.upsertObject)
          .bind(0, o.type()).bind(1, o.key()).bind(2, o.owner()).bind(3, o.epoch())
          .bind(4, o.serial()).bind(5, o.committedAt()).bind(6, o.deleted()).bind(7, o.attributes()));
    }
    if (change instanceof WriteBatch.RemoveObject r) {
      return run(c.createStatement("DELETE FROM ent_object WHERE obj_type = $1 AND obj_key = $2")
          .bind(0, r.type()).bind(1, r.key()));
    }
    if (change instanceof WriteBatch.PutWatermark p) {
      StoredData.WatermarkRecord w = p.watermark();
      return run(c.createStatement(dialect.upsertWatermark)
          .bind(0, w.owner()).bind(1, w.epoch()).bind(2, w.serial()));
    }
    if (change instanceof WriteBatch.PutPurge p) {
      StoredData.PurgeRecord u = p.purge();
      return run(c.createStatement(dialect.upsertPurge)
          .bind(0, u.owner()).bind(1, u.epoch()).bind(2, u.serial()));
    }
    WriteBatch.RemoveOwner r = (WriteBatch.RemoveOwner) change;
    return run(c.createStatement("DELETE FROM ent_object WHERE owner = $1 AND epoch <= $2")
            .bind(0, r.owner()).bind(1, r.epoch()))
        .then(run(c.createStatement("DELETE FROM ent_purge WHERE owner = $1 AND epoch <= $2")
            .bind(0, r.owner()).bind(1, r.epoch())))
        .then(run(c.createStatement("DELETE FROM ent_watermark WHERE owner = $1").bind(0, r.owner())))
        .then(run(c.createStatement(dialect.upsertOwner)
            .bind(0, r.owner()).bind(1, r.epoch()).bind(2, 0L).bind(3, false)));
  }

  private Mono<Void> run(Connection c, String sql) {
    return run(c.createStatement(sql));
  }

  private Mono<Void> run(Statement s) {
    return limited(Flux.from(s.execute()).flatMap(Result::getRowsUpdated).then());
  }

  private static String resource(String name) {
    try (InputStream in = R2dbcStateStore.class.getResourceAsStream(name)) {
      if (in == null) {
        throw new IllegalStateException("missing schema script " + name);
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new IllegalStateException("unreadable schema script " + name, e);
    }
  }

  /**
   * Once the operations asked for before have ended: gives up the claim if this instance took it
   * (a store that never took it opens no connection), and closes the connection. The store may be
   * loaded again after.
   */
  @Override
  public Mono<Void> close() {
    closed = true;
    renewal.get().dispose();
    // An operation that hangs (a half-open connection) would hold the close back for ever: after
    // the time to live, the connection is closed under it, and the claim lapses by itself.
    Mono<Void> force = Mono.defer(() -> limited(connection.getAndSet(new Opening()).close()))
        .onErrorResume(e -> Mono.empty())
        .subscribeOn(BLOCKING);
    return inTurn(Mono.defer(() -> {
          // Left in place while it releases, so that a forced close reaches it if it hangs.
          Opening current = connection.get();
          Mono<Void> release = !claimed
              ? Mono.<Void>empty()
              : limited(current.connection).flatMap(c -> run(c.createStatement(RELEASE_CLAIM).bind(0, instance)))
                  .onErrorResume(e -> Mono.empty()) // it lapses by itself
                  .then(Mono.fromRunnable(() -> claimed = false));
          return release.then(Mono.defer(() -> {
            connection.compareAndSet(current, new Opening()); // the next load opens anew
            // Limited: closing a half-open connection can wait for TCP to give up.
            return limited(current.close()).onErrorResume(e -> Mono.empty());
          }));
        })
        .subscribeOn(BLOCKING))
        .timeout(claimTtl, force);
  }

  @Override
  public String toString() {
    return "R2dbcStateStore[" + dialect + ", " + factory.getMetadata().getName() + "]";
  }
}
