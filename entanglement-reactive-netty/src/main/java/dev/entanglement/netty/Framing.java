package dev.entanglement.netty;

import dev.entanglement.ErrorCode;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.jspecify.annotations.Nullable;

/** The 8-byte frame header: body length and flags. Stateless. */
final class Framing {
  static final int HEADER_BYTES = 8;
  /** Default maximum body size: 1 MiB. */
  static final int DEFAULT_MAX_FRAME = 1 << 20;
  /** Critical flag bits this implementation understands: none so far. */
  static final int UNDERSTOOD_CRITICAL = 0;
  static final int CRITICAL_MASK = 0xffff;

  private static final FrameCodec CODEC = new FrameCodec();

  private Framing() {}

  /**
   * The header and {@code body} in one I/O buffer (pooled and direct by default): a single copy,
   * which the socket or the TLS engine would otherwise make from a wrapped heap array, and no
   * composite buffer per frame.
   */
  static ByteBuf encode(ByteBufAllocator alloc, byte[] body) {
    return write(alloc.ioBuffer(wireBytes(body)), body);
  }

  /** The bytes a frame of {@code body} takes on a stream: header and body. */
  static int wireBytes(byte[] body) {
    return HEADER_BYTES + body.length;
  }

  /** Appends the header and {@code body} to {@code out}; returns {@code out}. */
  static ByteBuf write(ByteBuf out, byte[] body) {
    return out.writeInt(body.length).writeInt(0).writeBytes(body);
  }

  /** The header and {@code body} in one new array (for transports that take whole messages). */
  static byte[] withHeader(byte[] body) {
    byte[] out = new byte[wireBytes(body)];
    java.nio.ByteBuffer.wrap(out).putInt(body.length).putInt(0).put(body);
    return out;
  }

  /** An ERROR frame, header included, as bytes. */
  static byte[] bytes(ErrorCode code, String message) {
    return withHeader(CODEC.encode(new Message.Error(0, code.wire(), message)));
  }

  /** Why a header is refused, or {@code null} if it is acceptable. */
  static @Nullable String refusal(long length, int flags, int maxFrame) {
    if (length == 0) {
      return "an empty body"; // every body starts with its type byte
    }
    if (length > maxFrame) {
      return "frame of " + length + " bytes exceeds the maximum of " + maxFrame;
    }
    int unknownCritical = flags & CRITICAL_MASK & ~UNDERSTOOD_CRITICAL;
    if (unknownCritical != 0) {
      return "unknown critical flags 0x" + Integer.toHexString(unknownCritical);
    }
    return null;
  }

  /**
   * Why a whole message (WebSocket) holding one frame is refused, or {@code null}: it must hold a
   * header, pass {@link #refusal}, and its header's length must match the message.
   *
   * @param messageBytes the message's size
   * @param header the message's first 8 bytes, or fewer if the message is shorter
   */
  static @Nullable String messageRefusal(int messageBytes, java.nio.ByteBuffer header, int maxFrame) {
    if (messageBytes < HEADER_BYTES) {
      return "message shorter than a frame header";
    }
    long length = Integer.toUnsignedLong(header.getInt(0));
    String r = refusal(length, header.getInt(4), maxFrame);
    if (r == null && length != messageBytes - HEADER_BYTES) {
      r = "frame length " + length + " disagrees with the message";
    }
    return r;
  }

  /** An ERROR frame (header and body) telling the peer why its connection is being closed. */
  static ByteBuf errorFrame(ByteBufAllocator alloc, ErrorCode code, String message) {
    return encode(alloc, CODEC.encode(new Message.Error(0, code.wire(), message)));
  }
}
