package dev.entanglement.benchmarks;

import dev.entanglement.Registry;
import dev.entanglement.SyncType;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.LengthFieldBasedFrameDecoder;
import java.util.Locale;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;
import tools.jackson.databind.json.JsonMapper;

/**
 * The object of the throughput, latency and fan-out harnesses (about 100 bytes of CBOR), and the raw
 * framing of their baselines: {@code [u32 body length][u32 flags][body]}, as in docs/PROTOCOL.md.
 */
final class Payload {
  private Payload() {}

  /** The synchronized record: UUID string id, owner, serial, two doubles, label. */
  public record Item(String id, String owner, long serial, double x, double y, String label) {}

  static final SyncType<Item> ITEM = SyncType.of("Item", Item.class, Item::id);

  static final int HEADER_BYTES = 8;
  static final int MAX_FRAME = 1 << 20;

  static Registry registry() {
    return Registry.builder("bench").type(ITEM).build();
  }

  /** {@code n} distinct UUID strings, reproducible from {@code seed}. */
  static String[] ids(int n, long seed) {
    java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
    String[] ids = new String[n];
    for (int i = 0; i < n; i++) {
      ids[i] = new UUID(r.nextLong(), r.nextLong()).toString();
    }
    return ids;
  }

  static String[] labels(int n) {
    String[] labels = new String[n];
    for (int i = 0; i < n; i++) {
      labels[i] = String.format(Locale.ROOT, "label-%07d", i);
    }
    return labels;
  }

  static Item item(String id, long serial, int index, String label) {
    return new Item(id, "bench-owner", serial, index * 0.5, serial * 0.25, label);
  }

  /** Encodes {@code item} as a SYNC frame body the way an owner does: straight from the value. */
  static byte[] syncBody(
      FrameCodec codec, JsonMapper json, Item item, String owner, long epoch, long serial) {
    // Straight from the value, as an owner node encodes a published version.
    return codec.encodeSync(
        ITEM.name(), item.id(), owner, epoch, serial, System.currentTimeMillis(), false, item, json);
  }

  /** A whole frame, header and body, in one buffer. */
  static ByteBuf frame(ByteBufAllocator alloc, byte[] body) {
    ByteBuf b = alloc.buffer(HEADER_BYTES + body.length);
    b.writeInt(body.length);
    b.writeInt(0);
    b.writeBytes(body);
    return b;
  }

  /** Splits a stream into bodies (header stripped). */
  static LengthFieldBasedFrameDecoder decoder() {
    return new LengthFieldBasedFrameDecoder(MAX_FRAME + HEADER_BYTES, 0, 4, 4, HEADER_BYTES);
  }

  /** Counts the bytes read from a channel (add it first in the pipeline: wire bytes). */
  @ChannelHandler.Sharable
  static final class ByteCounter extends ChannelInboundHandlerAdapter {
    final AtomicLong bytes = new AtomicLong();

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      if (msg instanceof ByteBuf b) {
        bytes.addAndGet(b.readableBytes());
      }
      ctx.fireChannelRead(msg);
    }
  }
}
