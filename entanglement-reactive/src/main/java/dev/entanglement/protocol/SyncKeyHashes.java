package dev.entanglement.protocol;

/**
 * The {@link String#hashCode()} of a SYNC body's type name ({@code t}) and key ({@code k}), read
 * from the body's bytes without decoding it: a hint that lets a receiver look up many objects at
 * once before it decodes and applies their states one by one. It never throws and never replaces
 * decoding: a body it cannot read cheaply, or reads wrongly because it is malformed, only costs the
 * receiver its hint.
 *
 * <p>What it reads: the type byte, the map's head, then entries until both fields are found. It
 * gives up ({@link #NONE}) on a body that is not a SYNC, is cut short, holds either text outside
 * ASCII (its Java hash is not the hash of its bytes) or indefinite, or has an entry before them
 * whose value is not an integer, text, byte string or simple value (a map, an array, a tag).
 * {@link FrameCodec} writes {@code t} and {@code k} first, so its bodies are read in two entries.
 */
public final class SyncKeyHashes {
  /** No hashes: the body could not be read cheaply. A pair that packs to this value reads as none. */
  public static final long NONE = Long.MIN_VALUE;

  private static final int TEXT = 3;
  private static final int MAP = 5;
  private static final int INDEFINITE = 31;

  private SyncKeyHashes() {}

  /** The type name's hash code in the high word and the key's in the low word, or {@link #NONE}. */
  public static long of(byte[] body) {
    if (body.length < 2 || body[0] != MessageType.SYNC.code() || (body[1] & 0xff) >>> 5 != MAP) {
      return NONE;
    }
    Cursor c = new Cursor(body, 1);
    long entries = c.argument();
    if (entries < 0 && c.info != INDEFINITE) {
      return NONE;
    }
    boolean typeSeen = false;
    boolean keySeen = false;
    int typeHash = 0;
    int keyHash = 0;
    for (long i = 0; (entries < 0 || i < entries) && !(typeSeen && keySeen); i++) {
      if (c.at >= body.length || (body[c.at] & 0xff) == 0xff) {
        return NONE; // cut short, or an indefinite map's end
      }
      if ((body[c.at] & 0xff) >>> 5 != TEXT) {
        return NONE;
      }
      long nameLength = c.argument();
      if (nameLength < 0 || nameLength > body.length - c.at) {
        return NONE;
      }
      int name = nameLength == 1 ? body[c.at] : -1;
      c.at += (int) nameLength;
      if (name == 't' || name == 'k') {
        long hash = c.asciiTextHash();
        if (hash == NONE) {
          return NONE;
        }
        if (name == 't') {
          typeHash = (int) hash;
          typeSeen = true;
        } else {
          keyHash = (int) hash;
          keySeen = true;
        }
      } else if (!c.skipScalar()) {
        return NONE;
      }
    }
    return typeSeen && keySeen ? ((long) typeHash << 32) | (keyHash & 0xffffffffL) : NONE;
  }

  /** The type name's hash code from a value of {@link #of} other than {@link #NONE}. */
  public static int typeHash(long hashes) {
    return (int) (hashes >>> 32);
  }

  /** The key's hash code from a value of {@link #of} other than {@link #NONE}. */
  public static int keyHash(long hashes) {
    return (int) hashes;
  }

  /** A position in a body and the head it read last. */
  private static final class Cursor {
    private final byte[] body;
    int at;
    int info;

    Cursor(byte[] body, int at) {
      this.body = body;
      this.at = at;
    }

    /** Whether the head read last was whole, with a definite argument. */
    boolean complete;

    /**
     * Reads the head at {@link #at} and returns its argument (a length, a count, an integer's
     * bits); -1, with {@link #complete} false, for an indefinite length, a reserved value or a head
     * cut short. An argument above {@code Long.MAX_VALUE} is negative, with {@link #complete} true.
     * Leaves {@link #at} past the head.
     */
    long argument() {
      complete = false;
      if (at >= body.length) {
        return -1;
      }
      info = body[at++] & 0x1f;
      if (info < 24) {
        complete = true;
        return info;
      }
      int bytes = switch (info) {
        case 24 -> 1;
        case 25 -> 2;
        case 26 -> 4;
        case 27 -> 8;
        default -> 0; // 28–30 reserved, 31 indefinite
      };
      if (bytes == 0 || body.length - at < bytes) {
        return -1;
      }
      long v = 0;
      for (int i = 0; i < bytes; i++) {
        v = v << 8 | (body[at++] & 0xff);
      }
      complete = true;
      return v;
    }

    /** The hash of the definite ASCII text at {@link #at}, or {@link #NONE}; moves past it. */
    long asciiTextHash() {
      if (at >= body.length || (body[at] & 0xff) >>> 5 != TEXT) {
        return NONE;
      }
      long length = argument();
      if (length < 0 || length > body.length - at) {
        return NONE;
      }
      int h = 0;
      for (int end = at + (int) length; at < end; at++) {
        byte b = body[at];
        if (b < 0) {
          return NONE; // outside ASCII
        }
        h = 31 * h + b;
      }
      return h & 0xffffffffL;
    }

    /** Moves past an integer, a definite text or byte string, or a simple value; false otherwise. */
    boolean skipScalar() {
      if (at >= body.length) {
        return false;
      }
      int major = (body[at] & 0xff) >>> 5;
      long argument = argument();
      return switch (major) {
        case 0, 1, 7 -> complete; // integers; simple values and floats
        case 2, TEXT -> {
          if (argument < 0 || argument > body.length - at) {
            yield false;
          }
          at += (int) argument;
          yield true;
        }
        default -> false;
      };
    }
  }
}
