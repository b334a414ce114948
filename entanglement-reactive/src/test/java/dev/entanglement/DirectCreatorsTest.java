package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonProperty;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;
import org.jspecify.annotations.Nullable;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import tools.jackson.databind.DatabindException;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.dataformat.cbor.CBORMapper;

class DirectCreatorsTest {
  private static final JsonMapper PLAIN = JsonMapper.builder().build();
  private static final JsonMapper DIRECT = JsonMapper.builder().addModule(new DirectCreators()).build();
  private static final CBORMapper CBOR = CBORMapper.builder().build();

  record Sample(
      String id,
      int count,
      long serial,
      double x,
      @Nullable Double boxed,
      boolean flag,
      List<String> tags,
      Map<String, Integer> scores,
      @Nullable Sample inner) {}

  /** Records whether Jackson's per-call {@code invokeWithArguments} built it. */
  record Traced(String a, int b) {
    static final ThreadLocal<Boolean> VIA_INVOKE_WITH_ARGUMENTS = new ThreadLocal<>();

    Traced {
      VIA_INVOKE_WITH_ARGUMENTS.set(
          Arrays.stream(new Throwable().getStackTrace())
              .anyMatch(f -> f.getMethodName().equals("invokeWithArguments")));
    }
  }

  /** Counts the instances Jackson's per-call adapter built, whatever the thread. */
  record TracedState(String id, int n) {
    static final AtomicInteger VIA_INVOKE_WITH_ARGUMENTS = new AtomicInteger();
    static final AtomicInteger BUILT = new AtomicInteger();

    TracedState {
      BUILT.incrementAndGet();
      if (Arrays.stream(new Throwable().getStackTrace())
          .anyMatch(f -> f.getMethodName().equals("invokeWithArguments"))) {
        VIA_INVOKE_WITH_ARGUMENTS.incrementAndGet();
      }
    }
  }

  record Checked(String name, int size) {
    Checked {
      if (size < 0) {
        throw new IllegalArgumentException("size must not be negative: " + size);
      }
    }
  }

  record Failing(String name, int size) {
    Failing {
      throw new AssertionError("constructor failed for " + name);
    }
  }

  private record Hidden(String a, long b) {}

  record Names(String first, String... rest) {}

  static final class Numbers {
    final int[] values;

    @JsonCreator
    Numbers(@JsonProperty("values") int... values) {
      this.values = values;
    }
  }

  static final class Annotated {
    final String name;
    final int size;

    @JsonCreator
    Annotated(@JsonProperty("name") String name, @JsonProperty("size") int size) {
      this.name = name;
      this.size = size;
    }
  }

  static final class Factory {
    final String name;
    final int size;

    private Factory(String name, int size) {
      this.name = name;
      this.size = size;
    }

    @JsonCreator
    static Factory of(@JsonProperty("name") String name, @JsonProperty("size") int size) {
      return new Factory(name, size);
    }
  }

  @ParameterizedTest
  @ValueSource(longs = {1, 2, 3, 4, 5})
  void bindsWhatJacksonBindsFromCborAndFromTrees(long seed) throws Exception {
    Random random = new Random(seed);
    for (int i = 0; i < 200; i++) {
      Sample s = sample(random, 2);
      byte[] cbor = CBOR.writeValueAsBytes(s);
      Sample plain = PLAIN.readerFor(Sample.class).readValue(CBOR.createParser(cbor));
      Sample direct = DIRECT.readerFor(Sample.class).readValue(CBOR.createParser(cbor));
      assertEquals(s, plain, "seed " + seed + " #" + i);
      assertEquals(plain, direct, "seed " + seed + " #" + i);
      JsonNode tree = PLAIN.valueToTree(s);
      assertEquals(s, DIRECT.treeToValue(tree, Sample.class), "seed " + seed + " #" + i);
    }
  }

  @Test
  void callsTheConstructorWithoutJacksonsPerCallAdapter() throws Exception {
    String json = "{\"a\":\"x\",\"b\":7}";
    assertEquals(new Traced("x", 7), PLAIN.readValue(json, Traced.class));
    assertTrue(Traced.VIA_INVOKE_WITH_ARGUMENTS.get(), "the plain mapper's path, for contrast");
    assertEquals(new Traced("x", 7), DIRECT.readValue(json, Traced.class));
    assertFalse(Traced.VIA_INVOKE_WITH_ARGUMENTS.get());
  }

  @Test
  void theEngineBindsReceivedStatesAndMergedProposalsThroughIt() {
    SyncType<TracedState> type = SyncType.of("TracedState", TracedState.class, TracedState::id);
    Registry reg = Registry.builder("direct").type(type).build();
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a", reg, b -> {});
      mesh.node("b", reg, b -> {});
      mesh.connect("a", "b", LocalTransport.builder().scheduler(mesh.clock).build());
      mesh.advance(Duration.ofSeconds(1));
      int built = TracedState.BUILT.get();
      int adapted = TracedState.VIA_INVOKE_WITH_ARGUMENTS.get();
      mesh.get("a").publish(new TracedState("k", 1)).block();
      mesh.advance(Duration.ofSeconds(1));
      assertEquals(1, mesh.get("b").get(type, "k").orElseThrow().require().n());
      mesh.get("b").propose(type, "k", Map.of("n", 2)).subscribe();
      mesh.advance(Duration.ofSeconds(1));
      assertEquals(2, mesh.get("b").get(type, "k").orElseThrow().require().n());
      // Built by Jackson: b's received state, a's merged proposal, b's bound RESPONSE (at least).
      assertTrue(TracedState.BUILT.get() - built >= 4, "built " + (TracedState.BUILT.get() - built));
      assertEquals(adapted, TracedState.VIA_INVOKE_WITH_ARGUMENTS.get());
    }
  }

  @Test
  void aConstructorsExceptionIsReportedAsJacksonReportsIt() {
    String json = "{\"name\":\"n\",\"size\":-1}";
    DatabindException plain = assertThrows(DatabindException.class, () -> PLAIN.readValue(json, Checked.class));
    DatabindException direct = assertThrows(DatabindException.class, () -> DIRECT.readValue(json, Checked.class));
    assertSame(plain.getClass(), direct.getClass());
    assertEquals(plain.getOriginalMessage(), direct.getOriginalMessage());
    assertInstanceOf(IllegalArgumentException.class, direct.getCause());
    assertEquals("size must not be negative: -1", direct.getCause().getMessage());
  }

  @Test
  void anErrorFromTheConstructorPropagates() {
    String json = "{\"name\":\"n\",\"size\":1}";
    assertThrows(AssertionError.class, () -> PLAIN.readValue(json, Failing.class));
    AssertionError e = assertThrows(AssertionError.class, () -> DIRECT.readValue(json, Failing.class));
    assertEquals("constructor failed for n", e.getMessage());
  }

  @Test
  void otherCreatorsAndNonPublicTypesStillBind() throws Exception {
    assertEquals(new Hidden("h", 3), DIRECT.readValue("{\"a\":\"h\",\"b\":3}", Hidden.class));
    Annotated a = DIRECT.readValue("{\"name\":\"c\",\"size\":2}", Annotated.class);
    assertEquals("c", a.name);
    assertEquals(2, a.size);
    Factory f = DIRECT.readValue("{\"name\":\"f\",\"size\":5}", Factory.class);
    assertEquals("f", f.name);
    assertEquals(5, f.size);
  }

  @Test
  void aVarargsConstructorTakesItsArrayAsOneArgument() throws Exception {
    String json = "{\"first\":\"a\",\"rest\":[\"b\",\"c\"]}";
    Names plain = PLAIN.readValue(json, Names.class);
    Names direct = DIRECT.readValue(json, Names.class);
    assertEquals(plain.first(), direct.first());
    assertEquals(List.of("b", "c"), Arrays.asList(direct.rest()));
    assertEquals(List.of(1, 2, 3),
        Arrays.stream(DIRECT.readValue("{\"values\":[1,2,3]}", Numbers.class).values).boxed().toList());
  }

  @Test
  void missingPrimitivesGetJacksonsDefaults() throws Exception {
    assertEquals(
        PLAIN.readValue("{\"a\":\"only\"}", Traced.class), DIRECT.readValue("{\"a\":\"only\"}", Traced.class));
  }

  private static Sample sample(Random r, int depth) {
    List<String> tags = new ArrayList<>();
    for (int i = r.nextInt(4); i > 0; i--) {
      tags.add(Long.toString(r.nextLong(), 36));
    }
    Map<String, Integer> scores = new LinkedHashMap<>();
    for (int i = r.nextInt(4); i > 0; i--) {
      scores.put("k" + r.nextInt(100), r.nextInt());
    }
    return new Sample(
        Long.toString(r.nextLong(), 36),
        r.nextInt(),
        r.nextLong(),
        r.nextDouble() * 1e6 - 5e5,
        r.nextBoolean() ? null : r.nextDouble(),
        r.nextBoolean(),
        tags,
        scores,
        depth > 0 && r.nextBoolean() ? sample(r, depth - 1) : null);
  }
}
