package dev.entanglement.netty;

import dev.entanglement.ErrorCode;
import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Splits a byte stream into frame bodies. A header that announces an empty body, more than the
 * maximum frame size or an unknown critical flag gets an ERROR frame and the connection is closed;
 * nothing more is read from it. Bodies are emitted as retained slices; the reactive bridge releases
 * them. The bodies split from one read are followed by {@link #END_OF_READ}, which the link delivers
 * as {@code Link.END_OF_BURST}: the engine then handles them together (see {@code Link#receive}).
 * Not an empty buffer: Reactor Netty drops those before they reach the link.
 *
 * <p>States: {@code READING} → {@code REFUSED} (terminal; input is discarded).
 */
final class FrameDecoder extends ByteToMessageDecoder {
  private static final Logger log = LoggerFactory.getLogger(FrameDecoder.class);
  static final String NAME = "entanglement.frames";
  /** Follows the bodies split from one read; not reference-counted. */
  static final Object END_OF_READ = new Object() {
    @Override
    public String toString() {
      return "END_OF_READ";
    }
  };

  private final int maxFrame;
  private boolean refused;

  FrameDecoder(int maxFrame) {
    this.maxFrame = maxFrame;
  }

  @Override
  protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
    int before = out.size();
    while (!refused && in.readableBytes() >= Framing.HEADER_BYTES) {
      int start = in.readerIndex();
      long length = in.getUnsignedInt(start);
      int flags = in.getInt(start + 4);
      String refusal = Framing.refusal(length, flags, maxFrame);
      if (refusal != null) {
        refuse(ctx, refusal);
        break;
      }
      if (in.readableBytes() < Framing.HEADER_BYTES + length) {
        break; // the rest comes with a later read; the marker still follows this read's bodies
      }
      in.skipBytes(Framing.HEADER_BYTES);
      out.add(in.readRetainedSlice((int) length));
    }
    if (out.size() > before) {
      out.add(END_OF_READ);
    }
    if (refused) {
      in.skipBytes(in.readableBytes());
    }
  }

  private void refuse(ChannelHandlerContext ctx, String reason) {
    refused = true;
    log.warn("refusing {}: {}", ctx.channel().remoteAddress(), reason);
    ctx.writeAndFlush(Framing.errorFrame(ctx.alloc(), ErrorCode.BAD_ENCODING, reason))
        .addListener(f -> GracefulClose.afterFlush(ctx.channel(), ctx.channel()::close));
  }
}
