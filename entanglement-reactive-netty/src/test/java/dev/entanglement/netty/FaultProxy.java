package dev.entanglement.netty;

import io.netty.bootstrap.Bootstrap;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.buffer.UnpooledByteBufAllocator;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.util.ReferenceCountUtil;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.EnumMap;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A fault-injecting TCP proxy for tests, on 127.0.0.1: every connection accepted on {@link #port()}
 * is relayed to a target port, and the bytes of each direction go through the faults currently set
 * for that direction (latency and jitter, a bandwidth limit, a black hole, a cut after a random
 * number of bytes). Faults change at run time and apply to open and future connections.
 *
 * <p>Design: one event-loop thread runs every connection; each accepted connection and the one it
 * dials form a {@code Pair}, whose state is confined to that thread. Each direction of a pair is a
 * {@code Lane}: bytes read from its source are stamped with a due time (arrival plus latency plus
 * seeded jitter, never earlier than the previous chunk's, so order is kept as TCP keeps it) and
 * queued; the lane's pump writes a chunk to the sink once it is due, the sink is writable, the
 * bandwidth budget allows it (chunks are cut to 10 ms of budget, so throughput is smooth) and the
 * direction is not black-holed. More than {@value #HIGH_WATER} queued bytes (or 100 ms of the
 * bandwidth limit) stop reading the source (TCP flow control then pushes back to the sender, so the
 * proxy never buffers without bound); below a quarter of that it reads again.
 *
 * <p>Lane states: {@code OPEN} → {@code SOURCE_CLOSED} (the source closed; what is queued is still
 * delivered, then the pair closes, as a FIN arrives after the data) → pair {@code CLOSED}. A lane
 * whose sink has closed drops what it holds (nobody can read it) and leaves closing to the other
 * lane, which still delivers its own queue. A black
 * hole holds the queue and the close alike, like a network that drops every packet while the peers'
 * TCP stacks keep retransmitting: nothing arrives and nothing is closed until it lifts; then what is
 * held is delivered. A cut writes exactly the chosen number of bytes (a random point, usually inside
 * a frame) and closes both sockets. {@link #dropAll()} closes every pair at once. {@code CLOSED}
 * is terminal and releases every queued buffer.
 *
 * <p>Invariants: every buffer read is either written (the sink releases it) or released when its
 * pair closes; a pair's state is touched only on the proxy's event loop; the seeded {@link Random}
 * is used only there, so one seed gives the same delays and cut points for the same traffic.
 */
final class FaultProxy implements AutoCloseable {
  /** Which way bytes flow: from the dialing side to the target, or back. */
  enum Direction {
    UPSTREAM,
    DOWNSTREAM
  }

  /**
   * The faults of one direction.
   *
   * @param latency added to every chunk
   * @param jitter up to this much more, uniformly at random (seeded)
   * @param bytesPerSecond a bandwidth limit; 0 for none
   * @param blackHole nothing passes and nothing closes while set
   */
  record Faults(Duration latency, Duration jitter, long bytesPerSecond, boolean blackHole) {
    static final Faults NONE = new Faults(Duration.ZERO, Duration.ZERO, 0, false);

    static Faults latency(Duration latency, Duration jitter) {
      return new Faults(latency, jitter, 0, false);
    }

    static Faults bandwidth(long bytesPerSecond) {
      return new Faults(Duration.ZERO, Duration.ZERO, bytesPerSecond, false);
    }

    static Faults blackHoled() {
      return new Faults(Duration.ZERO, Duration.ZERO, 0, true);
    }
  }

  /** Bytes a lane holds before it stops reading its source (without a bandwidth limit). */
  static final int HIGH_WATER = 64 * 1024;
  /**
   * The proxy's socket receive buffers: small, so that a lane that stops reading pushes back on the
   * sender after a few kilobytes instead of the kernel's default of about 128 KiB.
   */
  static final int RECEIVE_BUFFER = 8 * 1024;
  /**
   * The proxy's own buffers: unpooled heap buffers, which take no lock. Netty's shared adaptive
   * allocator can park a moment on a lock when several event loops allocate at once; under
   * BlockHound that park was reported by throwing inside a read of the proxy (seen once), which
   * closed the connection in the middle of a test.
   */
  private static final ByteBufAllocator ALLOCATOR = new UnpooledByteBufAllocator(false);
  /** How far a late lane may catch up on its bandwidth limit: up to 50 ms worth in a burst. */
  static final long BURST_NANOS = 50_000_000L;

  private final int targetPort;
  private final Random random;
  private final EventLoopGroup group = new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
  private final Channel server;
  private final Map<Direction, Faults> faults = new EnumMap<>(Direction.class);
  private final Map<Direction, Integer> cutWithin = new EnumMap<>(Direction.class);
  private final Set<Pair> pairs = ConcurrentHashMap.newKeySet();
  private final AtomicInteger accepted = new AtomicInteger();
  private final AtomicInteger cuts = new AtomicInteger();
  private final Map<Direction, AtomicLong> forwarded = new EnumMap<>(Direction.class);

  private FaultProxy(int targetPort, long seed) {
    this.targetPort = targetPort;
    this.random = new Random(seed);
    for (Direction d : Direction.values()) {
      faults.put(d, Faults.NONE);
      cutWithin.put(d, 0);
      forwarded.put(d, new AtomicLong());
    }
    server =
        new ServerBootstrap()
            .group(group)
            .channel(NioServerSocketChannel.class)
            .option(ChannelOption.SO_RCVBUF, RECEIVE_BUFFER) // inherited by accepted sockets
            .childOption(ChannelOption.ALLOCATOR, ALLOCATOR)
            .childOption(ChannelOption.AUTO_READ, false)
            .childHandler(
                new ChannelInitializer<SocketChannel>() {
                  @Override
                  protected void initChannel(SocketChannel ch) {
                    accepted.incrementAndGet();
                    dial(ch);
                  }
                })
            .bind("127.0.0.1", 0)
            .syncUninterruptibly()
            .channel();
  }

  /** Starts a proxy to {@code 127.0.0.1:targetPort}; {@code seed} drives jitter and cut points. */
  static FaultProxy start(int targetPort, long seed) {
    return new FaultProxy(targetPort, seed);
  }

  int port() {
    return ((java.net.InetSocketAddress) server.localAddress()).getPort();
  }

  /** Sets the faults of one direction, for open and future connections. */
  void set(Direction d, Faults f) {
    synchronized (faults) {
      faults.put(d, f);
    }
    wakeAll();
  }

  /** Sets the same faults both ways. */
  void setBoth(Faults f) {
    set(Direction.UPSTREAM, f);
    set(Direction.DOWNSTREAM, f);
  }

  /**
   * Arms cuts: every connection, open or future, is closed after a random number of further bytes
   * in {@code d}, from 1 to {@code maxBytes} (seeded); then the next connection gets its own point.
   * 0 disarms.
   */
  void cutWithin(Direction d, int maxBytes) {
    synchronized (faults) {
      cutWithin.put(d, maxBytes);
    }
    wakeAll();
  }

  /** Removes every fault and disarms cuts. */
  void clear() {
    synchronized (faults) {
      for (Direction d : Direction.values()) {
        faults.put(d, Faults.NONE);
        cutWithin.put(d, 0);
      }
    }
    wakeAll();
  }

  /** Closes every open connection now (both sockets), whatever the faults. */
  void dropAll() {
    pairs.forEach(p -> p.loop().execute(p::close));
  }

  /** Connections accepted since the start. */
  int accepted() {
    return accepted.get();
  }

  /** Connections open now (accepted and not yet closed on both sides). */
  int open() {
    return pairs.size();
  }

  /** Connections closed by an armed cut. */
  int cuts() {
    return cuts.get();
  }

  /** Bytes written toward the sink of direction {@code d}. */
  long forwarded(Direction d) {
    return forwarded.get(d).get();
  }

  private Faults faults(Direction d) {
    synchronized (faults) {
      return faults.get(d);
    }
  }

  private int cutLimit(Direction d) {
    synchronized (faults) {
      return cutWithin.get(d);
    }
  }

  private void wakeAll() {
    pairs.forEach(p -> p.loop().execute(p::pumpBoth));
  }

  private void dial(SocketChannel client) {
    new Bootstrap()
        .group(client.eventLoop())
        .channel(NioSocketChannel.class)
        .option(ChannelOption.AUTO_READ, false)
        .option(ChannelOption.ALLOCATOR, ALLOCATOR)
        .option(ChannelOption.SO_RCVBUF, RECEIVE_BUFFER)
        .handler(new ChannelInboundHandlerAdapter())
        .connect("127.0.0.1", targetPort)
        .addListener(
            (ChannelFutureListener)
                f -> {
                  if (!f.isSuccess() || !client.isActive()) {
                    f.channel().close();
                    client.close();
                    return;
                  }
                  Pair p = new Pair(client, f.channel());
                  pairs.add(p);
                  p.start();
                });
  }

  @Override
  public void close() {
    server.close().syncUninterruptibly();
    dropAll();
    group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    // A pair that was still dialing when dropAll ran: the loop has ended (its sockets with it), so
    // its queues are released here.
    pairs.forEach(p -> {
      p.up.release();
      p.down.release();
    });
  }

  /** One proxied connection: the accepted socket and the one dialed to the target. */
  private final class Pair {
    private final Lane up;
    private final Lane down;
    private boolean cutting;
    private boolean closed;

    Pair(Channel client, Channel target) {
      up = new Lane(Direction.UPSTREAM, client, target);
      down = new Lane(Direction.DOWNSTREAM, target, client);
    }

    io.netty.channel.EventLoop loop() {
      return up.source.eventLoop();
    }

    void start() {
      up.source.pipeline().addLast(new Reader(up, down));
      down.source.pipeline().addLast(new Reader(down, up));
      up.source.closeFuture().addListener(f -> loop().execute(() -> up.sourceClosed()));
      down.source.closeFuture().addListener(f -> loop().execute(() -> down.sourceClosed()));
      up.source.config().setAutoRead(true);
      down.source.config().setAutoRead(true);
    }

    void pumpBoth() {
      up.pump();
      down.pump();
    }

    void close() {
      if (closed) {
        return;
      }
      closed = true;
      pairs.remove(this);
      up.release();
      down.release();
      up.source.close();
      down.source.close();
    }

    /** One direction of the pair; see the class note for its states. */
    private final class Lane {
      private final Direction direction;
      private final Channel source;
      private final Channel sink;
      private final ArrayDeque<Chunk> queue = new ArrayDeque<>();
      private long queuedBytes;
      private long lastDueNanos;
      private long nextFreeNanos;
      private long cutLeft = -1;
      private int cutArmedFor;
      private boolean sourceClosed;
      private boolean finishing;
      private boolean timerArmed;

      Lane(Direction direction, Channel source, Channel sink) {
        this.direction = direction;
        this.source = source;
        this.sink = sink;
      }

      void receive(ByteBuf msg) {
        if (closed || cutting) {
          ReferenceCountUtil.release(msg);
          return;
        }
        Faults f = faults(direction);
        long now = System.nanoTime();
        int slice = f.bytesPerSecond() > 0 ? (int) Math.max(64, f.bytesPerSecond() / 100) : Integer.MAX_VALUE;
        try {
          while (msg.isReadable()) {
            long delay = f.latency().toNanos();
            if (!f.jitter().isZero()) {
              delay += (long) (random.nextDouble() * f.jitter().toNanos());
            }
            lastDueNanos = Math.max(lastDueNanos, now + delay);
            ByteBuf chunk = msg.readRetainedSlice(Math.min(slice, msg.readableBytes()));
            queue.add(new Chunk(chunk, lastDueNanos));
            queuedBytes += chunk.readableBytes();
          }
        } finally {
          msg.release();
        }
        if (queuedBytes > highWater(f)) {
          source.config().setAutoRead(false);
        }
        pump();
      }

      void sourceClosed() {
        sourceClosed = true;
        pump();
      }

      void pump() {
        if (closed || cutting) {
          return;
        }
        Faults f = faults(direction);
        if (f.blackHole()) {
          return; // held; set() or clear() pumps again
        }
        armCut();
        if (!sink.isActive()) {
          // Nothing queued can arrive any more; the other lane delivers what it holds, then closes.
          release();
          if (sourceClosed) {
            close();
          }
          return;
        }
        boolean wrote = false;
        while (!queue.isEmpty()) {
          long now = System.nanoTime();
          Chunk head = queue.peek();
          long wait = Math.max(head.dueNanos - now, f.bytesPerSecond() > 0 ? nextFreeNanos - now : 0);
          if (wait > 0) {
            later(wait);
            break;
          }
          if (!sink.isWritable()) {
            break; // the sink's writability change pumps again
          }
          queue.poll();
          int n = head.buf.readableBytes();
          queuedBytes -= n;
          if (cutLeft >= 0 && n >= cutLeft) {
            cut(head.buf);
            return;
          }
          if (cutLeft >= 0) {
            cutLeft -= n;
          }
          sink.write(head.buf);
          wrote = true;
          forwarded.get(direction).addAndGet(n);
          if (f.bytesPerSecond() > 0) {
            // Late timers are made up for within a 50 ms burst, so the average rate is the limit.
            nextFreeNanos = Math.max(nextFreeNanos, now - BURST_NANOS) + n * 1_000_000_000L / f.bytesPerSecond();
          }
        }
        if (wrote) {
          sink.flush();
        }
        if (queuedBytes < highWater(f) / 4 && !sourceClosed && !source.config().isAutoRead()) {
          source.config().setAutoRead(true);
        }
        if (queue.isEmpty() && sourceClosed && !finishing) {
          // As a FIN follows the data: close once every byte written has left (closing at once
          // would drop what the sink's channel still buffers).
          finishing = true;
          sink.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(flushed -> close());
        }
      }

      /** What the lane holds before it stops reading: {@value #HIGH_WATER}, or 100 ms of a bandwidth limit. */
      private long highWater(Faults f) {
        return f.bytesPerSecond() > 0 ? Math.max(1024, Math.min(HIGH_WATER, f.bytesPerSecond() / 10)) : HIGH_WATER;
      }

      /** Draws this lane's cut point when cuts are armed (or re-armed with another limit). */
      private void armCut() {
        int limit = cutLimit(direction);
        if (limit != cutArmedFor) {
          cutArmedFor = limit;
          cutLeft = limit > 0 ? 1 + random.nextInt(limit) : -1;
        }
      }

      /** Writes the first {@code cutLeft} bytes of {@code buf}, then closes the pair. */
      private void cut(ByteBuf buf) {
        int n = (int) cutLeft;
        ByteBuf part = buf.retainedSlice(buf.readerIndex(), n);
        buf.release();
        cutting = true;
        forwarded.get(direction).addAndGet(n);
        cuts.incrementAndGet();
        sink.writeAndFlush(part).addListener(f -> close());
      }

      private void later(long nanos) {
        if (!timerArmed) {
          timerArmed = true;
          source.eventLoop().schedule(() -> {
            timerArmed = false;
            pump();
          }, nanos, TimeUnit.NANOSECONDS);
        }
      }

      void release() {
        queue.forEach(c -> c.buf.release());
        queue.clear();
        queuedBytes = 0;
      }
    }

    /** Feeds the bytes read from one socket into its lane; pumps the lane that writes to it. */
    private final class Reader extends ChannelInboundHandlerAdapter {
      private final Lane reading;
      private final Lane writing;

      Reader(Lane reading, Lane writing) {
        this.reading = reading;
        this.writing = writing;
      }

      @Override
      public void channelRead(ChannelHandlerContext ctx, Object msg) {
        reading.receive((ByteBuf) msg);
      }

      @Override
      public void channelWritabilityChanged(ChannelHandlerContext ctx) {
        writing.pump();
      }

      @Override
      public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        ctx.close(); // a reset: the lane sees its source close
      }
    }
  }

  private record Chunk(ByteBuf buf, long dueNanos) {}
}
