package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.ErrorCode;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.embedded.EmbeddedChannel;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class FrameDecoderTest {
  private static final FrameCodec CODEC = new FrameCodec();

  private static ByteBuf frames(byte[]... bodies) {
    ByteBuf b = Unpooled.buffer();
    for (byte[] body : bodies) {
      Framing.write(b, body);
    }
    return b;
  }

  private static byte[] body(ByteBuf slice) {
    try {
      return ByteBufUtil.getBytes(slice);
    } finally {
      slice.release();
    }
  }

  @Test
  @DisplayName("the bodies split from one read are followed by END_OF_READ; a read that completes no frame adds nothing")
  void bodiesOfAReadThenItsMarker() {
    EmbeddedChannel ch = new EmbeddedChannel(new FrameDecoder(1 << 20));
    byte[] one = {3, 1};
    byte[] two = {3, 2, 2};
    byte[] three = {3, 3, 3, 3};
    ByteBuf third = frames(three);
    ch.writeInbound(frames(one, two), third.readRetainedSlice(5));
    assertArrayEquals(one, body(ch.readInbound()));
    assertArrayEquals(two, body(ch.readInbound()));
    assertSame(FrameDecoder.END_OF_READ, ch.readInbound());
    assertNull(ch.readInbound(), "the third frame is not complete: no body, no marker");
    ch.writeInbound(third);
    assertArrayEquals(three, body(ch.readInbound()));
    assertSame(FrameDecoder.END_OF_READ, ch.readInbound());
    assertNull(ch.readInbound());
    assertFalse(ch.finish());
  }

  @Test
  @DisplayName("a read that ends inside a body is marked after the bodies it completed")
  void aReadEndingInsideABodyIsMarked() {
    EmbeddedChannel ch = new EmbeddedChannel(new FrameDecoder(1 << 20));
    byte[] one = {3, 1};
    byte[] three = {3, 3, 3, 3};
    ByteBuf third = frames(three);
    ByteBuf read = frames(one).writeBytes(third, Framing.HEADER_BYTES + 2); // one read
    ch.writeInbound(read);
    assertArrayEquals(one, body(ch.readInbound()));
    assertSame(FrameDecoder.END_OF_READ, ch.readInbound(), "the third frame's header came, not its body");
    assertNull(ch.readInbound());
    ch.writeInbound(third);
    assertArrayEquals(three, body(ch.readInbound()));
    assertSame(FrameDecoder.END_OF_READ, ch.readInbound());
    assertNull(ch.readInbound());
    assertFalse(ch.finish());
  }

  @Test
  @DisplayName("a frame announcing an empty body gets ERROR BAD_ENCODING and the connection is closed; nothing is read after it")
  void anEmptyBodyIsRefused() {
    EmbeddedChannel ch = new EmbeddedChannel(new FrameDecoder(1 << 20));
    ch.writeInbound(frames(new byte[0], new byte[] {3, 1}));
    assertNull(ch.readInbound());
    ByteBuf out = ch.readOutbound();
    try {
      assertEquals(out.readableBytes() - Framing.HEADER_BYTES, out.getInt(0));
      Message.Error e = assertInstanceOf(Message.Error.class,
          CODEC.decode(ByteBufUtil.getBytes(out, Framing.HEADER_BYTES, out.readableBytes() - Framing.HEADER_BYTES)));
      assertEquals(ErrorCode.BAD_ENCODING.wire(), e.code());
      assertTrue(e.message().contains("empty body"), e.message());
    } finally {
      out.release();
    }
    ch.runPendingTasks();
    assertFalse(ch.isOpen());
  }
}
