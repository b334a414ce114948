package dev.entanglement.netty;

import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.EventLoop;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.RejectedExecutionException;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Flux;
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
 * <p>Demand: {@code window} frames at first (512; 1 behind a bandwidth cap, which paces frame by
 * frame); a run's frames and marker are asked for again once its write completed, that is once
 * the channel took them into the socket, and a marker that ends no frame held here at once. So
 * at most {@code window} frames are accepted and not yet written, and a reader that stops reading
 * stops the requests: the engine's queue coalesces meanwhile. Bytes are bounded too, by an
 * estimate: the frames asked for and not yet written are kept to as many as fit in {@link
 * #MAX_UNWRITTEN} bytes at the size of the largest frame of the last run (at least one when
 * nothing is pending), and before the first run to {@link #INITIAL_REQUEST}; the demand held
 * back is asked for as later writes complete. So a link of large frames holds about {@link
 * #MAX_UNWRITTEN} bytes, not {@code window} large frames; frames that grow suddenly can exceed it
 * by what was asked for at the smaller size.
 *
 * <p>State machine: {@code IDLE} (nothing queued on the event loop) → {@code SCHEDULED} (a task
 * is queued; frames arriving meanwhile join the run it takes) → {@code IDLE} when the task takes
 * the run. {@code DONE}, from either, once the source completed and its last run is written, on a
 * failed write, the source's error, or cancellation; a pending run is then dropped (arrays only:
 * no buffer exists before the task writes). Threads: the source's signals arrive serially on any
 * thread, the task and write completions run on the event loop; the run, the flags and the
 * demand and byte counts ({@code outstanding}, {@code credits}, {@code unwritten}, {@code
 * frameBytes}) are guarded by this object's lock.
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
  /** Bytes of bodies asked for and not yet written, at the estimated frame size: 256 KiB. */
  static final int MAX_UNWRITTEN = 256 * 1024;
  /** Frames asked for before any frame size is known: 8 (or the window, if smaller). */
  static final int INITIAL_REQUEST = 8;

  /** Writes (without flushing) the non-empty bodies of a run; returns the last write's future. */
  interface Encoding {
    ChannelFuture write(Channel ch, List<byte[]> run);
  }

  private final Channel ch;
  private final int window;
  private final Encoding encoding;
  private final MonoSink<Void> done;
  private @Nullable Subscription upstream;
  private List<byte[]> run = new ArrayList<>();
  private boolean scheduled;
  private boolean completed;
  private boolean finished;
  /** Frames asked for and not yet received. */
  private int outstanding;
  /** Bytes of the bodies received and not yet written (in {@code run} or in a pending write). */
  private long unwritten;
  /** Frames written whose demand is held back by the byte bound, to be asked for later. */
  private int credits;
  /** The largest body of the last run that held a frame, 0 before any: the size estimate. */
  private long frameBytes;
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
   * sent is written, fails with the source's error or a failed write. Cancelling stops it.
   */
  static Mono<Void> write(Channel ch, Publisher<byte[]> frames, int window, Encoding encoding) {
    return Mono.create(sink -> Flux.from(frames).subscribe(new BurstWriter(ch, window, encoding, sink)));
  }

  /** A stream's encoding: header and body of every frame, in as few buffers as {@link #MAX_BUFFER} allows. */
  static ChannelFuture streamRun(Channel ch, List<byte[]> run) {
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
    done.onDispose(this::cancel);
    int first = Math.min(window, INITIAL_REQUEST);
    synchronized (this) {
      outstanding = first;
      credits = window - first;
    }
    s.request(first);
  }

  @Override
  public void onNext(byte[] body) {
    boolean wake;
    int asked = 0;
    synchronized (this) {
      if (finished) {
        return;
      }
      outstanding--;
      if (body.length == 0 && run.isEmpty()) {
        // A marker that ends no frame held here (the engine ends a run once demand is back, and
        // the run may have left already, at the last frame asked for): nothing to write, so its
        // unit of demand is given back now, not by a task on the event loop.
        asked = giveBack(1);
        wake = false;
      } else {
        run.add(body);
        unwritten += body.length;
        wake = !scheduled && (body.length == 0 || outstanding == 0);
        scheduled |= wake;
      }
    }
    if (asked > 0) {
      upstream.request(asked);
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

  /** On the event loop: writes the pending run, then asks for as many items as it held. */
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
    long bytes = 0;
    long largest = 0;
    for (byte[] body : taken) {
      bytes += body.length;
      largest = Math.max(largest, body.length);
    }
    long runBytes = bytes;
    if (largest > 0) {
      synchronized (this) {
        frameBytes = largest;
      }
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
    if (settled == null) {
      settled(items, runBytes, last);
    } else {
      settled.addListener(f -> {
        if (f.isSuccess()) {
          settled(items, runBytes, last);
        } else {
          fail(f.cause());
        }
      });
    }
  }

  private void settled(int items, long bytes, boolean last) {
    if (last) {
      if (end()) {
        done.success();
      }
      return;
    }
    int asked;
    synchronized (this) {
      if (finished) {
        return;
      }
      unwritten -= bytes;
      asked = giveBack(items);
    }
    if (asked > 0) {
      upstream.request(asked);
    }
  }

  /**
   * Returns {@code items} units of demand that were used (under the lock): they join the held-back
   * ones, and as many as {@link #grantable()} allows are counted as asked for; returns how many,
   * for the caller to request outside the lock.
   */
  private int giveBack(int items) {
    credits += items;
    int asked = grantable();
    credits -= asked;
    outstanding += asked;
    return asked;
  }

  /**
   * How many of the held-back frames may be asked for now (under the lock): as many as keep the
   * frames asked for and unwritten within {@link #MAX_UNWRITTEN} bytes at the estimated size, and
   * at least one when nothing is asked for or unwritten. Demand never stalls: while any frame is
   * asked for the engine can send, and every unwritten byte belongs to a run whose write settles
   * and asks again.
   */
  private int grantable() {
    if (credits == 0) {
      return 0;
    }
    long room = MAX_UNWRITTEN - unwritten;
    long fit = frameBytes == 0 ? (long) credits + outstanding : Math.max(0, room) / frameBytes;
    long n = Math.min(credits, fit - outstanding);
    if (n <= 0) {
      n = outstanding == 0 && unwritten == 0 ? 1 : 0;
    }
    return (int) n;
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
