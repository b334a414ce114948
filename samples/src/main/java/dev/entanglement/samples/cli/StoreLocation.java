package dev.entanglement.samples.cli;

import dev.entanglement.r2dbc.R2dbcStateStore;
import java.nio.file.Path;
import java.util.UUID;
import org.jspecify.annotations.Nullable;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * Where a node keeps its state, as given to {@code --store}: {@code h2:PATH} (an embedded H2 file,
 * PATH without the {@code .mv.db} extension), {@code mem} (embedded H2 in memory, gone at exit), or
 * a PostgreSQL URL {@code postgresql://user@host:5432/db} (also accepted with the R2DBC prefix
 * {@code r2dbc:postgresql://…}). When absent, the node uses {@code h2:DATA/node} under its data
 * directory.
 */
record StoreLocation(Kind kind, @Nullable Path file, @Nullable String url) {
  enum Kind { H2_FILE, MEMORY, POSTGRESQL }

  static StoreLocation parse(String text) {
    if (text.equals("mem")) {
      return new StoreLocation(Kind.MEMORY, null, null);
    }
    if (text.startsWith("h2:") && text.length() > 3) {
      return h2(Path.of(text.substring(3)));
    }
    if (text.startsWith("postgresql://") || text.startsWith("postgres://")) {
      return new StoreLocation(Kind.POSTGRESQL, null, "r2dbc:postgresql://" + text.substring(text.indexOf("://") + 3));
    }
    if (text.startsWith("r2dbc:postgresql://")) {
      return new StoreLocation(Kind.POSTGRESQL, null, text);
    }
    throw new TypeConversionException(
        "expected h2:PATH, mem or postgresql://USER@HOST:PORT/DB, got '" + text + "'");
  }

  static StoreLocation h2(Path file) {
    return new StoreLocation(Kind.H2_FILE, file, null);
  }

  R2dbcStateStore open() {
    return switch (kind) {
      case H2_FILE -> R2dbcStateStore.h2File(file);
      case MEMORY -> R2dbcStateStore.h2InMemory("entanglement-" + UUID.randomUUID());
      case POSTGRESQL -> R2dbcStateStore.postgresql(url);
    };
  }

  /** As written by a user, with any password in a URL masked. */
  @Override
  public String toString() {
    return switch (kind) {
      case H2_FILE -> "h2:" + file;
      case MEMORY -> "mem";
      case POSTGRESQL -> url.replaceFirst("://([^:/@]+):[^@/]*@", "://$1:***@");
    };
  }

  /** The picocli converter. */
  static final class Converter implements ITypeConverter<StoreLocation> {
    @Override
    public StoreLocation convert(String value) {
      return parse(value);
    }
  }
}
