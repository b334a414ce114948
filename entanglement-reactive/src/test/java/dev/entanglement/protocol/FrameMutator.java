package dev.entanglement.protocol;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.JsonNodeFactory;
import tools.jackson.databind.node.ObjectNode;
import tools.jackson.dataformat.cbor.CBORMapper;

/**
 * A seeded generator of frame bodies for fuzzing: valid messages of every type (the golden vectors
 * and one or more encodings per {@link MessageType}), and mutations of them at the byte level (bit
 * flips, insertions, deletions, truncation, splices, type codes) and at the CBOR level (missing and
 * unknown keys, values of the wrong type, huge and negative integers, deep nesting, indefinite
 * lengths, tags, lying length prefixes, unknown simple values), plus random bytes.
 *
 * <p>Case {@code i} of seed {@code s} depends on nothing else: {@link #body(long, long)} rebuilds it,
 * so that a failure printed as {@code seed=s, case=i} is reproduced alone.
 */
public final class FrameMutator {
  /** The default seed of the regression pass; {@code -Dfuzz.seed} overrides it. */
  public static final long DEFAULT_SEED = 20261129L;

  private static final FrameCodec CODEC = new FrameCodec();
  private static final CBORMapper CBOR = CBORMapper.builder().build();
  private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
  private static final byte[] INTERESTING = {
    0x00, 0x01, 0x17, 0x18, 0x1b, 0x1f, 0x20, 0x3b, 0x40, 0x5f, 0x60, 0x7f, (byte) 0x80,
    (byte) 0x9f, (byte) 0xa0, (byte) 0xbf, (byte) 0xc0, (byte) 0xd8, (byte) 0xf4, (byte) 0xf6,
    (byte) 0xf7, (byte) 0xf9, (byte) 0xfb, (byte) 0xff
  };

  private final List<byte[]> seeds;

  public FrameMutator() {
    this.seeds = validBodies();
  }

  /** The valid bodies the mutations start from: every message type, and the golden vectors. */
  public List<byte[]> seeds() {
    return seeds;
  }

  /** Case {@code index} of {@code seed}: a valid body (about 1 in 16), a mutated one, or random bytes. */
  public byte[] body(long seed, long index) {
    Random r = new Random(seed * 0x9E3779B97F4A7C15L + index);
    int choice = r.nextInt(16);
    if (choice == 0) {
      return seeds.get(r.nextInt(seeds.size())).clone();
    }
    if (choice == 1) {
      byte[] b = new byte[r.nextInt(64)];
      r.nextBytes(b);
      if (b.length > 0 && r.nextBoolean()) {
        b[0] = (byte) (1 + r.nextInt(17));
      }
      return b;
    }
    byte[] body = seeds.get(r.nextInt(seeds.size())).clone();
    int rounds = 1 + (r.nextInt(4) == 0 ? r.nextInt(4) : 0);
    for (int i = 0; i < rounds; i++) {
      body = choice < 9 ? mutateBytes(r, body) : mutateCbor(r, body);
    }
    return body;
  }

  /** Valid messages of every type, encoded by {@link FrameCodec}, and the golden vectors. */
  static List<byte[]> validBodies() {
    ObjectNode attrs = NODES.objectNode().put("id", "c1").put("x", 1.5).put("y", -2.0);
    ObjectNode shape =
        NODES.objectNode().put("id", "s1").put("team", "red").put("x", 3.0).put("y", 4.0).put("locked", false);
    ObjectNode nested = NODES.objectNode();
    nested.putObject("inner").putArray("list").add(1).add("two").add(true).addNull();
    Message.Sync sync = new Message.Sync("Cursor", "c1", "owner-x", 1, 7, 1_700_000_000_000L, false, attrs);
    List<Message> messages =
        List.of(
            new Message.Hello(FrameCodec.PROTOCOL_VERSION, "x", List.of(new Message.OwnerAd("owner-x", 1)), 0),
            new Message.Hello(FrameCodec.PROTOCOL_VERSION, "y", List.of(), 65536),
            new Message.Routes(Map.of("owner-x", 0, "owner-z", 2, "owner-a", 16)),
            sync,
            new Message.Sync("Shape", "s1", "owner-x", 1, 3, 0, false, shape),
            new Message.Sync("Cursor", "c2", "owner-x", 1, 9, 5, true, NODES.objectNode()),
            new Message.Sync("Cursor", "c3", "owner-x", 2, 1, 5, false, nested),
            new Message.Withdraw("Cursor", "c1", "alice", 1, 7),
            new Message.Propose(
                3, Message.ProposalKind.UPDATE, "Cursor", "c1", "owner-a", true,
                NODES.objectNode().put("x", 4.0), null, 0),
            new Message.Propose(
                4, Message.ProposalKind.DELETE, "Cursor", "c1", "owner-a", false,
                NODES.objectNode(), "5b1c8e0e-0000-4000-8000-000000000001", 2),
            new Message.Create(5, "Cursor", "owner-a", attrs, 0),
            new Message.Transition("Cursor", "c1", "owner-a", 1, 1, "t-1", "x", 1, true, NODES.objectNode().put("x", 2.0)),
            new Message.TransitionEnd("Cursor", "c1", "t-1", "ABORTED"),
            new Message.TransitionEnd("Cursor", "c1", "t-1", "CONFIRMED"),
            new Message.Response(1, sync),
            new Message.Error(0, "BAD_OWNER", "not yours"),
            new Message.Error(2, "UNAUTHORIZED", "no"),
            new Message.NoResponse(1),
            new Message.OwnerRemoved("owner-x", 1),
            new Message.Ping(42),
            new Message.Pong(42),
            new Message.GoAway("TIMEOUT", "bye"),
            new Message.CatchUp(List.of(new Message.Mark("owner-a", 1, 3), new Message.Mark("owner-x", 1, 0))),
            new Message.Watermark("owner-x", 1, 7, false),
            new Message.Watermark("owner-x", 1, 9, true));
    List<byte[]> out = new ArrayList<>();
    messages.forEach(m -> out.add(CODEC.encode(m)));
    out.add(golden("hello.hex"));
    out.add(golden("sync.hex"));
    return List.copyOf(out);
  }

  /** A golden vector's bytes: hex, '#' comments and whitespace ignored. */
  static byte[] golden(String name) {
    try (var in = FrameMutator.class.getResourceAsStream("/golden/" + name)) {
      String text = new String(in.readAllBytes(), StandardCharsets.US_ASCII);
      StringBuilder hex = new StringBuilder();
      for (String line : text.split("\n")) {
        if (!line.startsWith("#")) {
          hex.append(line.replaceAll("\\s", ""));
        }
      }
      return HexFormat.of().parseHex(hex);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The committed regression corpus: every {@code .bin} under {@code fuzz/corpus}, sorted by name. */
  public static List<Map.Entry<String, byte[]>> corpus() {
    try {
      var url = FrameMutator.class.getResource("/fuzz/corpus");
      if (url == null) {
        return List.of();
      }
      try (Stream<Path> files = Files.list(Path.of(url.toURI()))) {
        List<Map.Entry<String, byte[]>> out = new ArrayList<>();
        for (Path p : files.filter(f -> f.toString().endsWith(".bin")).sorted().toList()) {
          out.add(Map.entry(p.getFileName().toString(), Files.readAllBytes(p)));
        }
        return out;
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (java.net.URISyntaxException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Writes a failing input under {@code target/fuzz-failures} so it can be added to the corpus. */
  public static Path saveFailure(String level, long seed, long index, byte[] input) {
    try {
      Path dir = Path.of("target", "fuzz-failures");
      Files.createDirectories(dir);
      Path f = dir.resolve(level + "-" + seed + "-" + index + ".bin");
      Files.write(f, input);
      return f;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The iterations of a level: {@code -Dfuzz.iterations} or the default of the regression pass. */
  public static long iterations(long regressionDefault) {
    String v = System.getProperty("fuzz.iterations", "");
    return v.isBlank() ? regressionDefault : Long.parseLong(v.trim());
  }

  /** The seed: {@code -Dfuzz.seed} (a number, or {@code random}) or {@link #DEFAULT_SEED}. */
  public static long seed() {
    String v = System.getProperty("fuzz.seed", "");
    if (v.isBlank()) {
      return DEFAULT_SEED;
    }
    return v.trim().equals("random") ? System.nanoTime() : Long.parseLong(v.trim());
  }

  // ------------------------------------------------------------------ byte level

  private static byte[] mutateBytes(Random r, byte[] b) {
    switch (r.nextInt(9)) {
      case 0: { // bit flips
        if (b.length == 0) {
          return b;
        }
        int n = 1 + r.nextInt(4);
        for (int i = 0; i < n; i++) {
          int at = r.nextInt(b.length * 8);
          b[at / 8] ^= (byte) (1 << (at % 8));
        }
        return b;
      }
      case 1: { // insert bytes
        int at = r.nextInt(b.length + 1);
        byte[] ins = new byte[1 + r.nextInt(8)];
        for (int i = 0; i < ins.length; i++) {
          ins[i] = r.nextBoolean() ? INTERESTING[r.nextInt(INTERESTING.length)] : (byte) r.nextInt();
        }
        return splice(b, at, 0, ins);
      }
      case 2: { // delete bytes
        if (b.length == 0) {
          return b;
        }
        int at = r.nextInt(b.length);
        return splice(b, at, Math.min(b.length - at, 1 + r.nextInt(8)), new byte[0]);
      }
      case 3: // truncate
        return java.util.Arrays.copyOf(b, r.nextInt(b.length + 1));
      case 4: { // interesting byte
        if (b.length > 0) {
          b[r.nextInt(b.length)] = INTERESTING[r.nextInt(INTERESTING.length)];
        }
        return b;
      }
      case 5: { // another message type code, known or not
        if (b.length > 0) {
          b[0] = (byte) (r.nextInt(4) == 0 ? r.nextInt(256) : 1 + r.nextInt(17));
        }
        return b;
      }
      case 6: { // duplicate a region
        if (b.length < 2) {
          return b;
        }
        int from = r.nextInt(b.length);
        int len = 1 + r.nextInt(Math.min(32, b.length - from));
        byte[] region = java.util.Arrays.copyOfRange(b, from, from + len);
        return splice(b, r.nextInt(b.length + 1), 0, region);
      }
      case 7: { // append garbage after a complete map
        byte[] tail = new byte[1 + r.nextInt(8)];
        r.nextBytes(tail);
        return splice(b, b.length, 0, tail);
      }
      default: { // random byte overwrite
        if (b.length > 0) {
          b[r.nextInt(b.length)] = (byte) r.nextInt();
        }
        return b;
      }
    }
  }

  private static byte[] splice(byte[] b, int at, int remove, byte[] insert) {
    byte[] out = new byte[b.length - remove + insert.length];
    System.arraycopy(b, 0, out, 0, at);
    System.arraycopy(insert, 0, out, at, insert.length);
    System.arraycopy(b, at + remove, out, at + insert.length, b.length - at - remove);
    return out;
  }

  // ------------------------------------------------------------------ CBOR level

  private static byte[] mutateCbor(Random r, byte[] body) {
    if (body.length < 2) {
      return body;
    }
    JsonNode tree;
    try {
      tree = CBOR.readTree(java.util.Arrays.copyOfRange(body, 1, body.length));
    } catch (RuntimeException e) {
      return mutateBytes(r, body); // already broken at the byte level
    }
    if (!(tree instanceof ObjectNode map) || map.isEmpty()) {
      return mutateBytes(r, body);
    }
    List<String> keys = new ArrayList<>();
    map.propertyNames().forEach(keys::add);
    String key = keys.get(r.nextInt(keys.size()));
    byte type = body[0];
    switch (r.nextInt(9)) {
      case 0: // missing key
        map.remove(key);
        return encode(type, map);
      case 1: // unknown key (must be ignored)
        map.set(randomKey(r), randomValue(r, 3));
        return encode(type, map);
      case 2: // wrong type, null, huge or negative value
        map.set(key, randomValue(r, 2));
        return encode(type, map);
      case 3: { // a nested field (owners, marks, attributes, routes) gets a bad value
        JsonNode child = map.get(key);
        mutateNested(r, child);
        return encode(type, map);
      }
      case 4: // a value replaced by raw, hand-made CBOR
        return rawValue(type, map, key, rawCbor(r));
      case 5: // another message type's fields under this type
        return encode((byte) (1 + r.nextInt(17)), map);
      case 6: { // definite map header that lies about its size
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(type);
        int n = map.size() + (r.nextBoolean() ? 1 : -1) * (1 + r.nextInt(3));
        head(out, 5, Math.max(0, n));
        map.properties().forEach(e -> {
          writeText(out, e.getKey());
          byte[] v = CBOR.writeValueAsBytes(e.getValue());
          out.write(v, 0, v.length);
        });
        return out.toByteArray();
      }
      case 7: { // text values as indefinite-length chunked strings
        return rawValue(type, map, key, indefiniteText(r, map.get(key).isString() ? map.get(key).asString() : "v"));
      }
      default: // nothing but one huge raw value for the body
        return concat(new byte[] {type}, rawCbor(r));
    }
  }

  private static void mutateNested(Random r, JsonNode child) {
    if (child instanceof ObjectNode o) {
      if (!o.isEmpty() && r.nextBoolean()) {
        List<String> ks = new ArrayList<>();
        o.propertyNames().forEach(ks::add);
        String k = ks.get(r.nextInt(ks.size()));
        if (r.nextBoolean()) {
          o.set(k, randomValue(r, 2));
        } else {
          o.remove(k);
        }
      } else {
        o.set(r.nextBoolean() ? "" : randomKey(r), randomValue(r, 2));
      }
    } else if (child instanceof ArrayNode a) {
      if (a.isEmpty() || r.nextInt(3) == 0) {
        a.add(randomValue(r, 2));
      } else {
        int i = r.nextInt(a.size());
        if (a.get(i) instanceof ObjectNode o && r.nextBoolean()) {
          mutateNested(r, o);
        } else {
          a.set(i, randomValue(r, 2));
        }
      }
    }
  }

  private static String randomKey(Random r) {
    String[] ks = {"", "a", "z", "\u0000", "oo", "é", "k", "vv", "hh"};
    return ks[r.nextInt(ks.length)];
  }

  private static JsonNode randomValue(Random r, int depth) {
    switch (r.nextInt(depth > 0 ? 16 : 13)) {
      case 0: return NODES.nullNode();
      case 1: return NODES.booleanNode(r.nextBoolean());
      case 2: return NODES.numberNode(Long.MAX_VALUE);
      case 3: return NODES.numberNode(Long.MIN_VALUE);
      case 4: return NODES.numberNode(-1);
      case 5: return NODES.numberNode(new BigInteger("340282366920938463463374607431768211457"));
      case 6: return NODES.numberNode(r.nextDouble() * 1e20);
      case 7: return NODES.numberNode(Double.NaN);
      case 8: return NODES.stringNode("");
      case 9: return NODES.stringNode(" ");
      case 10: return NODES.stringNode("x".repeat(r.nextInt(3) == 0 ? 70_000 : 3));
      case 11: return NODES.binaryNode(new byte[] {1, 2, 3});
      case 12: return NODES.numberNode(Integer.MAX_VALUE);
      case 13: {
        ArrayNode a = NODES.arrayNode();
        for (int i = r.nextInt(3); i > 0; i--) {
          a.add(randomValue(r, depth - 1));
        }
        return a;
      }
      case 14: {
        ObjectNode o = NODES.objectNode();
        for (int i = r.nextInt(3); i > 0; i--) {
          o.set(randomKey(r), randomValue(r, depth - 1));
        }
        return o;
      }
      default: return NODES.stringNode("owner-x");
    }
  }

  /** Hand-made CBOR data items that an encoder of trees would never write. */
  private static byte[] rawCbor(Random r) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    switch (r.nextInt(10)) {
      case 0: { // deep nesting of arrays or maps
        int depth = r.nextBoolean() ? 600 + r.nextInt(2000) : 50_000;
        boolean maps = r.nextBoolean();
        for (int i = 0; i < depth; i++) {
          if (maps) {
            out.write(0xa1);
            out.write(0x60); // key ""
          } else {
            out.write(r.nextBoolean() ? 0x81 : 0x9f);
          }
        }
        out.write(0x00);
        return out.toByteArray();
      }
      case 1: // byte or text string announcing a length far beyond the frame
        out.write(r.nextBoolean() ? 0x5b : 0x7b);
        writeLong(out, r.nextBoolean() ? Long.MAX_VALUE : 0xffffffffL);
        out.write(0x41);
        return out.toByteArray();
      case 2: // array or map announcing 2^32 - 1 or 2^63 - 1 elements
        out.write(r.nextBoolean() ? 0x9b : 0xbb);
        writeLong(out, r.nextBoolean() ? Long.MAX_VALUE : 0xffffffffL);
        out.write(0x00);
        return out.toByteArray();
      case 3: // unsigned and negative integers at 64 bits (beyond long)
        out.write(r.nextBoolean() ? 0x1b : 0x3b);
        writeLong(out, -1L);
        return out.toByteArray();
      case 4: // tags: bignum, decimal fraction, self-describe, unknown
        int[] tags = {0xc2, 0xc3, 0xc4, 0xc5, 0xd9, 0xd8};
        int t = tags[r.nextInt(tags.length)];
        out.write(t);
        if (t == 0xd9) {
          out.write(0xd9);
          out.write(0xf7); // 55799 self-describe
        } else if (t == 0xd8) {
          out.write(r.nextInt(256));
        }
        if (t == 0xc2 || t == 0xc3) {
          out.write(0x58);
          out.write(200);
          for (int i = 0; i < 200; i++) {
            out.write(0xff);
          }
        } else if (t == 0xc4 || t == 0xc5) {
          out.write(0x82);
          out.write(0x3b);
          writeLong(out, Long.MAX_VALUE);
          out.write(0x01);
        } else {
          out.write(0x01);
        }
        return out.toByteArray();
      case 5: // half, single and double floats, NaN and infinities
        int[][] floats = {{0xf9, 0x7e, 0x00}, {0xf9, 0x7c, 0x00}, {0xfa, 0x7f, 0x80, 0, 0},
            {0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}, {0xfb, 0x43, 0xe0, 0, 0, 0, 0, 0, 0}};
        for (int v : floats[r.nextInt(floats.length)]) {
          out.write(v);
        }
        return out.toByteArray();
      case 6: // simple values: undefined, unassigned, reserved encodings, a lone break
        int[] simple = {0xf7, 0xf0, 0xf8, 0xfc, 0xff, 0x1c, 0x5c, 0xbc};
        int s = simple[r.nextInt(simple.length)];
        out.write(s);
        if (s == 0xf8) {
          out.write(r.nextInt(256));
        }
        return out.toByteArray();
      case 7: // invalid UTF-8 in a text string
        out.write(0x63);
        out.write(0xc3);
        out.write(0x28);
        out.write(0xff);
        return out.toByteArray();
      case 8: // indefinite-length byte string with a wrong-type chunk
        out.write(0x5f);
        out.write(0x41);
        out.write(0x01);
        out.write(0x61);
        out.write(0x78);
        out.write(0xff);
        return out.toByteArray();
      default: // indefinite map with an odd number of items
        out.write(0xbf);
        out.write(0x61);
        out.write(0x61);
        out.write(0xff);
        return out.toByteArray();
    }
  }

  private static byte[] indefiniteText(Random r, String text) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(0x7f);
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    int at = 0;
    while (at < bytes.length) {
      int n = 1 + r.nextInt(Math.max(1, bytes.length - at));
      head(out, 3, n);
      out.write(bytes, at, n);
      at += n;
    }
    out.write(0xff);
    return out.toByteArray();
  }

  /** The map, encoded with {@code key}'s value replaced by {@code raw} (an indefinite-length map). */
  private static byte[] rawValue(byte type, ObjectNode map, String key, byte[] raw) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(type);
    out.write(0xbf);
    Iterator<Map.Entry<String, JsonNode>> it = map.properties().iterator();
    while (it.hasNext()) {
      var e = it.next();
      writeText(out, e.getKey());
      byte[] v = e.getKey().equals(key) ? raw : CBOR.writeValueAsBytes(e.getValue());
      out.write(v, 0, v.length);
    }
    out.write(0xff);
    return out.toByteArray();
  }

  private static byte[] encode(byte type, JsonNode tree) {
    return concat(new byte[] {type}, CBOR.writeValueAsBytes(tree));
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] out = java.util.Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  private static void writeText(ByteArrayOutputStream out, String s) {
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    head(out, 3, b.length);
    out.write(b, 0, b.length);
  }

  private static void head(ByteArrayOutputStream out, int major, long n) {
    int m = major << 5;
    if (n < 24) {
      out.write(m | (int) n);
    } else if (n < 256) {
      out.write(m | 24);
      out.write((int) n);
    } else if (n < 65536) {
      out.write(m | 25);
      out.write((int) (n >> 8));
      out.write((int) n);
    } else {
      out.write(m | 27);
      writeLong(out, n);
    }
  }

  private static void writeLong(ByteArrayOutputStream out, long v) {
    for (int i = 7; i >= 0; i--) {
      out.write((int) (v >>> (8 * i)));
    }
  }
}
