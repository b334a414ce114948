package dev.entanglement.r2dbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.entanglement.store.PermanentStoreException;
import dev.entanglement.store.StoredData;
import dev.entanglement.store.WriteBatch;
import io.r2dbc.spi.ConnectionFactories;
import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
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
    execute("DROP TABLE IF EXISTS ent_object, ent_owner, ent_watermark, ent_purge, ent_schema");
    return sameDatabase();
  }

  @Override
  io.r2dbc.spi.ConnectionFactory direct() {
    return ConnectionFactories.get(URL);
  }

  @Test
  void aSecondNodeOnTheSameDatabaseIsRefusedWhileTheFirstHoldsIt() {
    R2dbcStateStore first = emptyStore();
    first.load().block(WAIT);
    R2dbcStateStore second = sameDatabase();
    PermanentStoreException refused = assertThrows(PermanentStoreException.class, () -> second.load().block(WAIT));
    assertTrue(refused.getMessage().contains("another node holds this store"), refused.getMessage());
    first.write(new WriteBatch().add(new WriteBatch.PutOwner(new StoredData.OwnerRecord("o", 1, 1, true))))
        .block(WAIT);
    first.close().block(WAIT); // its connection, and the lock with it, ends
    assertEquals(1, second.load().block(WAIT).owners().size(), "free once the first closed");
    second.close().block(WAIT);
  }

  @Test
  void aNodeThatCannotStartOnAHeldStoreSaysWhy() {
    R2dbcStateStore held = emptyStore();
    held.load().block(WAIT);
    dev.entanglement.EntanglementNode node = dev.entanglement.EntanglementNode.builder().id("second")
        .registry(dev.entanglement.Registry.builder("r").type(CURSOR).build()).store(sameDatabase()).build();
    assertThrows(PermanentStoreException.class, () -> node.start().block(WAIT));
    node.close().onErrorResume(e -> Mono.empty()).block(WAIT);
    held.close().block(WAIT);
  }

  @Override
  R2dbcStateStore sameDatabase() {
    return track(R2dbcStateStore.postgresql(URL));
  }
}
