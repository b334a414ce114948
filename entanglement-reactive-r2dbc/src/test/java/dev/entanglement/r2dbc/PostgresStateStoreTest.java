package dev.entanglement.r2dbc;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * The store suite on PostgreSQL at 127.0.0.1:5432, database {@code test}, trust authentication
 * (override with {@code ENTANGLEMENT_POSTGRES_URL}). Skipped with a message when no server answers,
 * unless {@code ENTANGLEMENT_REQUIRE_POSTGRES=true} (CI), which turns the skip into a failure.
 */
class PostgresStateStoreTest extends StoreContract {
  static final String URL =
      System.getenv().getOrDefault(
          "ENTANGLEMENT_POSTGRES_URL", "r2dbc:postgresql://postgres@127.0.0.1:5432/test");

  @BeforeAll
  static void needsPostgres() {
    String problem = null;
    try {
      Mono.from(ConnectionFactories.get(URL).create())
          .flatMap(c -> Mono.from(c.close()))
          .block(Duration.ofSeconds(10));
    } catch (RuntimeException e) {
      problem = e.toString();
    }
    if (problem != null && "true".equals(System.getenv("ENTANGLEMENT_REQUIRE_POSTGRES"))) {
      throw new AssertionError("PostgreSQL is required here but unreachable at " + URL + ": " + problem);
    }
    assumeTrue(problem == null, "skipped: no PostgreSQL at " + URL + " (" + problem + ")");
  }

  @Override
  R2dbcStateStore emptyStore() {
    execute("DROP TABLE IF EXISTS ent_object, ent_owner, ent_watermark, ent_purge, ent_claim, ent_schema");
    return sameDatabase();
  }

  @Override
  void execute(String sql) {
    Mono.usingWhen(
            Mono.<Connection>from(ConnectionFactories.get(URL).create()),
            (Connection c) -> Flux.from(c.createStatement(sql).execute()).flatMap(r -> r.getRowsUpdated()).then(),
            Connection::close)
        .block(Duration.ofSeconds(30));
  }

  @Override
  Long queryLong(String sql) {
    return Mono.usingWhen(
            Mono.<Connection>from(ConnectionFactories.get(URL).create()),
            (Connection c) -> Flux.from(c.createStatement(sql).execute())
                .flatMap(r -> r.map(row -> ((Number) row.get(0)).longValue())).next(),
            Connection::close)
        .block(Duration.ofSeconds(30));
  }

  @Override
  R2dbcStateStore sameDatabase() {
    return R2dbcStateStore.postgresql(URL);
  }
}
