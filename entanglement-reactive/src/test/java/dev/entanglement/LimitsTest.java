package dev.entanglement;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.JsonNodeFactory;
import tools.jackson.databind.node.ObjectNode;
import tools.jackson.dataformat.cbor.CBORMapper;

class LimitsTest {
  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
  private static final CBORMapper CBOR = CBORMapper.builder().build();

  /** Seeded: the shortcut's bound is never below the real encoding, so it never lets one through. */
  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {1, 2, 3})
  void sizeBoundIsAnUpperBound(long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    for (int i = 0; i < 2_000; i++) {
      JsonNode tree = randomTree(r, 3);
      int actual = CBOR.writeValueAsBytes(tree).length;
      assertTrue(Limits.sizeBound(tree, Long.MAX_VALUE) >= actual, () -> tree + " encodes to " + actual);
    }
  }

  /** Seeded: with the shortcut, a tree is refused exactly when its encoding exceeds the limit. */
  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {4, 5})
  void checkAgreesWithTheEncodedSize(long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    for (int i = 0; i < 2_000; i++) {
      JsonNode tree = randomTree(r, 3);
      int actual = CBOR.writeValueAsBytes(tree).length;
      int max = Math.max(1, actual + r.nextInt(-8, 9));
      Limits limits = new Limits(1, 1, max, 0, 0, 1, 1);
      if (actual > max) {
        EntanglementException e =
            assertThrows(EntanglementException.class, () -> limits.checkObjectSize(tree, "it"));
        assertEquals(ErrorCode.LIMIT_EXCEEDED, e.code());
      } else {
        limits.checkObjectSize(tree, "it");
      }
    }
  }

  @Test
  void bigNumbersAreCountedByEncoding() {
    ObjectNode tree = NODES.objectNode().put("n", new java.math.BigDecimal("1e-400"));
    assertTrue(Limits.sizeBound(tree, 100) > 100);
    new Limits(1, 1, 100, 0, 0, 1, 1).checkObjectSize(tree, "it"); // small once encoded
  }

  private static JsonNode randomTree(SplittableRandom r, int depth) {
    int kind = r.nextInt(depth > 0 ? 9 : 7);
    return switch (kind) {
      case 0 -> NODES.stringNode(text(r));
      case 1 -> NODES.numberNode(r.nextLong());
      case 2 -> NODES.numberNode(r.nextInt(-30, 30));
      case 3 -> NODES.numberNode(r.nextDouble());
      case 4 -> NODES.booleanNode(r.nextBoolean());
      case 5 -> NODES.nullNode();
      case 6 -> NODES.binaryNode(new byte[r.nextInt(40)]);
      case 7 -> {
        ObjectNode o = NODES.objectNode();
        for (int i = r.nextInt(6); i > 0; i--) {
          o.set(text(r), randomTree(r, depth - 1));
        }
        yield o;
      }
      default -> {
        ArrayNode a = NODES.arrayNode();
        for (int i = r.nextInt(6); i > 0; i--) {
          a.add(randomTree(r, depth - 1));
        }
        yield a;
      }
    };
  }

  /** Text of ASCII, two-, three- and four-byte (surrogate pair) characters. */
  private static String text(SplittableRandom r) {
    StringBuilder b = new StringBuilder();
    for (int i = r.nextInt(30); i > 0; i--) {
      switch (r.nextInt(4)) {
        case 0 -> b.append((char) r.nextInt('a', 'z' + 1));
        case 1 -> b.append('é');
        case 2 -> b.append('€');
        default -> b.appendCodePoint(0x1F600);
      }
    }
    return b.toString();
  }
}
