package dev.entanglement.protocol;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.dataformat.cbor.CBORMapper;

class SyncKeyHashesTest {
  private static final FrameCodec CODEC = new FrameCodec();
  private static final JsonMapper JSON = JsonMapper.builder().build();
  private static final CBORMapper CBOR = CBORMapper.builder().build();

  private static long hashes(String type, String key) {
    return ((long) type.hashCode() << 32) | (key.hashCode() & 0xffffffffL);
  }

  private static byte[] sync(String type, String key) {
    return CODEC.encodeSync(type, key, "owner-1", 3, 4, 5, false, Map.of("x", 1), JSON);
  }

  /** A SYNC body whose map holds {@code fields} in their order. */
  private static byte[] body(Map<String, ?> fields) {
    byte[] map = CBOR.writeValueAsBytes(fields);
    byte[] body = new byte[map.length + 1];
    body[0] = (byte) MessageType.SYNC.code();
    System.arraycopy(map, 0, body, 1, map.length);
    return body;
  }

  @Test
  @DisplayName("the codec's SYNC bodies give the hash codes of their type name and key")
  void encodedSyncs() {
    for (String key : new String[] {"", "c", "9692a9aa-ce01-90a5-b038-e54bb6eee9c6", "k".repeat(300)}) {
      long h = SyncKeyHashes.of(sync("Item", key));
      assertEquals(hashes("Item", key), h, key);
      assertEquals("Item".hashCode(), SyncKeyHashes.typeHash(h));
      assertEquals(key.hashCode(), SyncKeyHashes.keyHash(h));
    }
  }

  @Test
  @DisplayName("the fields are found after integers, text, bytes and simple values, and in an indefinite map")
  void otherOrders() {
    Map<String, Object> fields = new LinkedHashMap<>();
    fields.put("e", 1L << 40);
    fields.put("s", -7);
    fields.put("o", "owner-1");
    fields.put("d", false);
    fields.put("n", null);
    fields.put("f", -1.5);
    fields.put("bin", new byte[] {1, 2, 3});
    fields.put("k", "c1");
    fields.put("t", "Cursor");
    fields.put("a", Map.of("x", 1));
    assertEquals(hashes("Cursor", "c1"), SyncKeyHashes.of(body(fields)));
    byte[] indefinite = {3, (byte) 0xbf, 0x61, 't', 0x61, 'T', 0x61, 'k', 0x62, 'c', '1', (byte) 0xff};
    assertEquals(hashes("T", "c1"), SyncKeyHashes.of(indefinite));
  }

  @Test
  @DisplayName("NONE for what it cannot read cheaply: other types, text outside ASCII, a map or array first, a missing field")
  void none() {
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(new byte[0]));
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(new byte[] {3}));
    byte[] propose = sync("Item", "c");
    propose[0] = (byte) MessageType.PROPOSE.code();
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(propose));
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(sync("Item", "caf\u00e9")));
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(sync("Ítem", "c")));
    Map<String, Object> mapFirst = new LinkedHashMap<>();
    mapFirst.put("a", Map.of("x", 1));
    mapFirst.put("t", "Cursor");
    mapFirst.put("k", "c1");
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(body(mapFirst)));
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(body(Map.of("t", "Cursor", "o", "owner-1"))));
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(body(Map.of("t", "Cursor", "k", 12))));
    byte[] indefiniteText = {3, (byte) 0xa2, 0x61, 't', 0x7f, 0x61, 'T', (byte) 0xff, 0x61, 'k', 0x61, 'c'};
    assertEquals(SyncKeyHashes.NONE, SyncKeyHashes.of(indefiniteText));
  }

  @Test
  @DisplayName("a body cut short anywhere gives NONE until the key's last byte, and never throws")
  void truncated() {
    String key = "9692a9aa-ce01";
    byte[] whole = sync("Item", key);
    int keyEnd = indexOf(whole, key.getBytes(StandardCharsets.US_ASCII)) + key.length();
    for (int n = 0; n <= whole.length; n++) {
      long h = SyncKeyHashes.of(Arrays.copyOf(whole, n));
      assertEquals(n >= keyEnd ? hashes("Item", key) : SyncKeyHashes.NONE, h, "length " + n);
    }
  }

  /** Property: no input makes it throw; seeded byte flips of real bodies, and random bodies. */
  @ParameterizedTest
  @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8})
  void neverThrows(long seed) {
    Random random = new Random(seed);
    byte[] base = sync("Item", "9692a9aa-ce01-90a5-b038-e54bb6eee9c6");
    for (int i = 0; i < 20_000; i++) {
      byte[] b;
      if (random.nextBoolean()) {
        b = base.clone();
        for (int flips = 1 + random.nextInt(4); flips > 0; flips--) {
          b[1 + random.nextInt(b.length - 1)] = (byte) random.nextInt(256);
        }
      } else {
        b = new byte[1 + random.nextInt(64)];
        random.nextBytes(b);
        b[0] = (byte) MessageType.SYNC.code();
        b[1 % b.length] = (byte) (0xa0 | random.nextInt(32));
      }
      SyncKeyHashes.of(b);
    }
  }

  private static int indexOf(byte[] haystack, byte[] needle) {
    outer:
    for (int i = 0; i + needle.length <= haystack.length; i++) {
      for (int j = 0; j < needle.length; j++) {
        if (haystack[i + j] != needle[j]) {
          continue outer;
        }
      }
      return i;
    }
    throw new AssertionError("not found");
  }
}
