package dev.entanglement.netty;

import dev.entanglement.transport.FrameSubscription;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.EventLoop;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;

/**
 * Writes a link's frame bodies to its channel a run at a time: one task on the event loop, one
 * write of the run (a buffer for a stream, a message per frame for WebSocket) and one flush, where
 * the run is what the engine handed over at once, ended by {@code Link.END_OF_BURST} or by the last
 * frame this writer asked for.
 *
 * <p>Why: Reactor Netty's {@code send}, fed from the engine's thread, wakes the event loop for the
 * first frame and flushes whatever arrived by the time it runs, about ten frames a system call in
 * B2, each call on a loopback socket also waking the receiver. A run ends only where the engine
 * has no more to send, so this adds no wait: the last frame of a run leaves at once.
 *
 * <p>Demand: {@code window} frames (512; 1 behind a bandwidth cap, which paces frame by frame)
 * and, from a node's {@link FrameSubscription}, {@link #MAX_UNWRITTEN} bytes. A run's frames,
 * marker and bytes are asked for again once its write completed, that is once the channel took
 * them into the socket; a marker that ends no frame held here is given back at once. So at most
 * {@code window} frames, and {@link #MAX_UNWRITTEN} bytes plus the one frame that crossed the
 * line, are accepted and not yet written, whatever the frames' sizes, and a reader that stops
 * reading stops the requests: the engine's queue coalesces meanwhile. A source that does not
 * count bytes (a plain publisher, such as the benchmarks' naive baseline) is bounded in frames
 * only; the bandwidth cap's operator passes requests for bytes on to the node.
 *
 * <p>State machine: {@code IDLE} (nothing queued on the event loop) → {@code SCHEDULED} (a task
 * is queued; frames arriving meanwhile join the run it takes) → {@code IDLE} when the task takes
 * the run. {@code DONE}, from either, once the source completed and its last run is written, on a
 * failed write, the source's error, or cancellation; a pending run is then dropped (arrays only:
 * no buffer exists before the task writes). A last run the channel has not taken within {@link
 * #LAST_WRITE} (a peer that reads nothing) fails the writer, so that the link, which closes after
 * its last frame, is closed without it rather than held open. Threads: the source's signals
 * arrive serially on any thread, the task and write completions run on the event loop; the run,
 * the flags and {@code outstanding} are guarded by this object's lock.
 */
final class BurstWriter implements CoreSubscriber<byte[]> {
  /**
   * Frames asked for and not yet written, without a bandwidth cap: 512. Twice a turn of the
   * engine's executor (256 tasks), so the run a busy turn dirties can be handed over whole while
   * the previous one is still being written; with Reactor Netty's 128, demand ran out mid-turn.
   */
  static final int WINDOW = 512;
  /** A stream run is written in buffers of at most this size (a larger frame gets its own): 64 KiB. */
  static final int MAX_BUFFER = 64 * 1024;
  /** Bytes of bodies asked for and not yet written, from a source that counts bytes: 256 KiB. */
  static final int MAX_UNWRITTEN = 256 * 1024;
  /** How long the channel may take to write the last run, once the source completed: 2 s. */
  static final Duration LAST_WRITE = Duration.ofSeconds(2);

  /**
   * Writes (without flushing) the non-empty bodies of a run; returns the last write's future, or
   * null if it wrote nothing.
   */
  interface Encoding {
    @Nullable ChannelFuture write(Channel ch, List<byte[]> run);
  }

  private final Channel ch;
  private final int window;
  private final Encoding encoding;
  private final MonoSink<Void> done;
  private @Nullable Subscription upstream;
  /** The upstream, if it counts bytes; set with it. */
  private @Nullable FrameSubscription bytes;
  private List<byte[]> run = new ArrayList<>();
  private boolean scheduled;
  private boolean completed;
  private boolean finished;
  /** Frames asked for and not yet received. */
  private int outstanding;
  /** The latest write; event loop only. */
  private @Nullable ChannelFuture lastWrite;

  private BurstWriter(Channel ch, int window, Encoding encoding, MonoSink<Void> done) {
    this.ch = ch;
    this.window = window;
    this.encoding = encoding;
    this.done = done;
  }

  /**
   * Writes {@code frames} to {@code ch}; completes once the source completed and everything it
   * sent is written, fails with the source's error or a failed write. Cancelling stops it. The
   * writer subscribes to {@code frames} itself, so that a node's {@link FrameSubscription} reaches
   * it unwrapped.
   */
  static Mono<Void> write(Channel ch, Publisher<byte[]> frames, int window, Encoding encoding) {
    return Mono.create(sink -> frames.subscribe(new BurstWriter(ch, window, encoding, sink)));
  }

  /**
   * A link's send: {@code frames} capped at {@code bytesPerSecond} ({@link Throttle}; no cap if 0
   * or less) and written as {@link #write} does, with the full {@link #WINDOW}, or a window of one
   * behind a cap, which paces frame by frame.
   */
  static Mono<Void> send(Channel ch, Publisher<byte[]> frames, long bytesPerSecond, Encoding encoding) {
    return write(ch, Throttle.apply(frames, bytesPerSecond), bytesPerSecond > 0 ? 1 : WINDOW, encoding);
  }

  /** A stream's encoding: header and body of every frame, in as few buffers as {@link #MAX_BUFFER} allows. */
  static @Nullable ChannelFuture streamRun(Channel ch, List<byte[]> run) {
    ChannelFuture last = null;
    int from = 0;
    while (from < run.size()) {
      int bytes = 0;
      int to = from;
      for (; to < run.size(); to++) {
        int size = run.get(to).length == 0 ? 0 : Framing.wireBytes(run.get(to));
        if (bytes > 0 && bytes + size > MAX_BUFFER) {
          break;
        }
        bytes += size;
      }
      if (bytes > 0) {
        ByteBuf buf = ch.alloc().ioBuffer(bytes);
        for (int i = from; i < to; i++) {
          byte[] body = run.get(i);
          if (body.length > 0) {
            Framing.write(buf, body);
          }
        }
        last = ch.write(buf);
      }
      from = to;
    }
    return last;
  }

  @Override
  public void onSubscribe(Subscription s) {
    upstream = s;
    bytes = s instanceof FrameSubscription f ? f : null;
    done.onDispose(this::cancel);
    synchronized (this) {
      outstanding = window;
    }
    if (bytes != null) {
      bytes.request(window, MAX_UNWRITTEN);
    } else {
      s.request(window);
    }
  }

  @Override
  public void onNext(byte[] body) {
    boolean wake;
    boolean giveBack = false;
    synchronized (this) {
      if (finished) {
        return;
      }
      outstanding--;
      if (body.length == 0 && run.isEmpty()) {
        // A marker that ends no frame held here (the engine ends a run once demand is back, and
        // the run may have left already, at the last frame asked for): nothing to write, so its
        // unit of demand is given back now, not by a task on the event loop.
        outstanding++;
        giveBack = true;
        wake = false;
      } else {
        run.add(body);
        wake = !scheduled && (body.length == 0 || outstanding == 0);
        scheduled |= wake;
      }
    }
    if (giveBack) {
      upstream.request(1);
    }
    if (wake) {
      schedule();
    }
  }

  @Override
  public void onError(Throwable t) {
    if (end()) {
      done.error(t);
    }
  }

  @Override
  public void onComplete() {
    boolean wake;
    synchronized (this) {
      completed = true;
      wake = !scheduled && !finished;
      scheduled |= wake;
    }
    if (wake) {
      schedule();
    }
  }

  private void schedule() {
    EventLoop loop;
    try {
      loop = ch.eventLoop();
    } catch (IllegalStateException deregistered) { // closed meanwhile: nothing can be written
      fail(deregistered);
      return;
    }
    if (loop.inEventLoop()) {
      writeRun();
      return;
    }
    try {
      loop.execute(this::writeRun);
    } catch (RejectedExecutionException e) {
      fail(e);
    }
  }

  /** On the event loop: writes the pending run, then asks for as many items and bytes as it held. */
  private void writeRun() {
    List<byte[]> taken;
    boolean last;
    synchronized (this) {
      if (finished) {
        return;
      }
      taken = run;
      run = new ArrayList<>();
      scheduled = false;
      last = completed;
    }
    int items = taken.size();
    long runBytes = 0;
    for (byte[] body : taken) {
      runBytes += body.length;
    }
    ChannelFuture written;
    try {
      written = encoding.write(ch, taken);
      if (written != null) {
        lastWrite = written;
        ch.flush();
      }
    } catch (RuntimeException | OutOfMemoryError e) {
      // No buffer for the run (Netty's OutOfDirectMemoryError): the link fails, rather than wait
      // for a settle that never comes, and nothing reaches the engine's onNext when run inline.
      fail(e);
      return;
    }
    ChannelFuture settled = last ? lastWrite : written;
    if (last && settled != null && !settled.isDone()) {
      ScheduledFuture<?> deadline;
      try {
        deadline = ch.eventLoop().schedule(
            () -> fail(new TimeoutException("the last frames were not written within " + LAST_WRITE)),
            LAST_WRITE.toMillis(), TimeUnit.MILLISECONDS);
      } catch (RejectedExecutionException e) { // the loop is shutting down: nothing will be written
        fail(e);
        return;
      }
      settled.addListener(f -> deadline.cancel(false));
    }
    long settledBytes = runBytes;
    if (settled == null) {
      settled(items, settledBytes, last);
    } else {
      settled.addListener(f -> {
        if (f.isSuccess()) {
          settled(items, settledBytes, last);
        } else {
          fail(f.cause());
        }
      });
    }
  }

  private void settled(int items, long written, boolean last) {
    if (last) {
      if (end()) {
        done.success();
      }
      return;
    }
    synchronized (this) {
      if (finished) {
        return;
      }
      outstanding += items;
    }
    if (bytes != null) {
      bytes.request(items, written); // one signal: the engine drains once for both
    } else if (items > 0) {
      upstream.request(items);
    }
  }

  private void fail(Throwable t) {
    if (end()) {
      upstream.cancel();
      done.error(t);
    }
  }

  private void cancel() {
    if (end()) {
      upstream.cancel();
    }
  }

  /** Moves to {@code DONE}; true for the caller that did. */
  private boolean end() {
    synchronized (this) {
      if (finished) {
        return false;
      }
      finished = true;
      run = List.of();
      return true;
    }
  }
}
