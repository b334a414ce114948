package dev.entanglement.r2dbc;

import java.nio.file.Path;
import org.junit.jupiter.api.io.TempDir;

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
}
