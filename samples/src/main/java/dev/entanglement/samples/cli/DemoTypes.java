package dev.entanglement.samples.cli;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import dev.entanglement.Policy;
import dev.entanglement.Registry;
import dev.entanglement.SyncType;
import org.jspecify.annotations.Nullable;

/**
 * The types of the browser demo, registered on every command-line node so that browsers can publish
 * and watch them through it.
 *
 * <p>They are records whose fields are all optional: an attribute a browser leaves out decodes as
 * {@code null}, and an attribute the record does not know is ignored when decoding. The node keeps
 * and relays the attributes exactly as received (a relay forwards the bytes it got), so a browser
 * may add fields without any change here; only Java code watching these types sees the fields
 * below. Numbers are boxed so that a missing one is {@code null}, not 0. Every object carries its
 * team in {@code team} ({@code red}, {@code blue} or {@code staff}), which {@link TeamsPolicy}
 * reads.
 */
final class DemoTypes {
  private DemoTypes() {}

  /** A browser's pointer. Key: {@code id}. */
  @JsonIgnoreProperties(ignoreUnknown = true)
  record Cursor(
      @Nullable String id,
      @Nullable String owner,
      @Nullable String team,
      @Nullable Double x,
      @Nullable Double y,
      @Nullable String color,
      @Nullable String name) {}

  /** A shape on the shared board. Key: {@code id}. */
  @JsonIgnoreProperties(ignoreUnknown = true)
  record Shape(
      @Nullable String id,
      @Nullable String owner,
      @Nullable String team,
      @Nullable String kind,
      @Nullable Double x,
      @Nullable Double y,
      @Nullable Double w,
      @Nullable Double h,
      @Nullable String color,
      @Nullable Boolean locked) {}

  static final SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);
  static final SyncType<Shape> SHAPE = SyncType.of("Shape", Shape.class, Shape::id);

  /** The registry {@code demo} with both types, under {@code policy}. */
  static Registry registry(Policy policy) {
    return Registry.builder("demo").type(CURSOR).type(SHAPE).policy(policy).build();
  }
}
