package dev.entanglement.transport;

import dev.entanglement.PeerId;
import dev.entanglement.internal.SerialExecutor;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Operators;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * The in-JVM transport: connects two nodes with a pair of {@link Link}s, optionally simulating a
 * bandwidth limit and a one-way latency. Time comes from the configured {@link Scheduler}, so a
 * {@code VirtualTimeScheduler} makes it deterministic.
 *
 * <p>Bandwidth model: a frame of {@code n} bytes occupies the link for {@code n / bytesPerSecond}
 * seconds, and the next frame is requested from the sender only when it is done, so the rate never
 * exceeds the cap over any window and the sender's coalescing queue absorbs the overload. Delivery
 * happens {@code latency} after transmission ends; the receiver's demand bounds the frames in
 * flight.
 *
 * <p>Defaults: unlimited bandwidth, zero latency, {@link Schedulers#parallel()}.
 */
public final class LocalTransport {
  private static final Logger log = LoggerFactory.getLogger(LocalTransport.class);

  private final long bytesPerSecond;
  private final Duration latency;
  private final Scheduler scheduler;

  private LocalTransport(Builder b) {
    this.bytesPerSecond = b.bytesPerSecond;
    this.latency = b.latency;
    this.scheduler = b.scheduler;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** A transport with the defaults. */
  public static LocalTransport create() {
    return builder().build();
  }

  /** Creates a connection; {@code a}'s link has remote {@code b} and vice versa. */
  public Connection connect(PeerId a, PeerId b) {
    return new Connection(a, b);
  }

  /** Builds a {@link LocalTransport}. */
  public static final class Builder {
    private long bytesPerSecond = 0;
    private Duration latency = Duration.ZERO;
    private Scheduler scheduler = Schedulers.parallel();

    private Builder() {}

    /** Bandwidth per direction, in bytes per second; 0 (the default) means unlimited. */
    public Builder bandwidth(long bytesPerSecond) {
      if (bytesPerSecond < 0) {
        throw new IllegalArgumentException("bandwidth must be >= 0");
      }
      this.bytesPerSecond = bytesPerSecond;
      return this;
    }

    /** One-way latency. Default zero. */
    public Builder latency(Duration latency) {
      this.latency = Objects.requireNonNull(latency);
      return this;
    }

    /** The scheduler that supplies time and timers. Default {@link Schedulers#parallel()}. */
    public Builder scheduler(Scheduler scheduler) {
      this.scheduler = Objects.requireNonNull(scheduler);
      return this;
    }

    public LocalTransport build() {
      return new LocalTransport(this);
    }
  }

  /** A connected pair of links. Closing either link closes both. */
  public final class Connection {
    private final Pipe aToB = new Pipe(this::close);
    private final Pipe bToA = new Pipe(this::close);
    private final Sinks.Empty<Void> closed = Sinks.empty();
    private final AtomicBoolean closing = new AtomicBoolean();
    private final LocalLink a;
    private final LocalLink b;

    private Connection(PeerId aId, PeerId bId) {
      this.a = new LocalLink(bId, aToB, bToA);
      this.b = new LocalLink(aId, bToA, aToB);
    }

    /** The link held by the first node (its remote is the second node). */
    public Link a() {
      return a;
    }

    /** The link held by the second node. */
    public Link b() {
      return b;
    }

    /** Bytes sent from a to b so far. */
    public long bytesAtoB() {
      return aToB.bytes.get();
    }

    /** Bytes sent from b to a so far. */
    public long bytesBtoA() {
      return bToA.bytes.get();
    }

    /** Closes both links (a network failure, as seen from both ends). */
    public void close() {
      if (closing.compareAndSet(false, true)) {
        aToB.close();
        bToA.close();
        closed.tryEmitEmpty();
      }
    }

    private final class LocalLink implements Link {
      private final PeerId remote;
      private final Pipe out;
      private final Pipe in;

      LocalLink(PeerId remote, Pipe out, Pipe in) {
        this.remote = remote;
        this.out = out;
        this.in = in;
      }

      @Override
      public PeerId remote() {
        return remote;
      }

      @Override
      public Flux<byte[]> receive() {
        return Flux.<byte[]>from(s -> in.subscribeReceiver(s));
      }

      @Override
      public Mono<Void> send(Publisher<byte[]> frames) {
        return Mono.defer(
            () -> {
              frames.subscribe(out.upstreamSubscriber());
              return closed.asMono();
            });
      }

      @Override
      public Mono<Void> onClose() {
        return closed.asMono();
      }

      @Override
      public void dispose() {
        close();
      }

      @Override
      public boolean isDisposed() {
        return closing.get();
      }
    }
  }

  /**
   * One direction of a connection. All fields are confined to {@code serial}.
   *
   * <p>States: {@code idle} (no frame being transmitted), {@code busy} (a frame occupies the link
   * until {@code linkFreeAt}). With a bandwidth limit, frames are requested from the sender one at
   * a time, when the link is free; a frame that answers that request within {@link
   * #CONTINUATION_SLACK_NANOS} starts at {@code linkFreeAt}, so the configured rate is reached
   * however late timers fire. Without a limit, frames are requested up to the receiver's demand.
   */
  private final class Pipe {
    /** How late a continuation frame may arrive and still start when the link became free. */
    static final long CONTINUATION_SLACK_NANOS = 2_000_000;

    final AtomicLong bytes = new AtomicLong();
    final AtomicBoolean receiverClaimed = new AtomicBoolean();
    final SerialExecutor serial =
        new SerialExecutor(t -> log.error("local transport pipe failed", t));
    @Nullable Subscription upstream;
    @Nullable Subscriber<? super byte[]> receiver;
    long receiverDemand;
    long requestedFromSender;
    boolean busy;
    boolean deliveryScheduled;
    boolean closed;
    /** The sender completed: close the connection once the frames in flight are delivered. */
    boolean closeAfterDelivery;
    /** When the last frame's transmission ends (or ended). */
    long linkFreeAt;
    /** The pending request was made the moment the link became free. */
    boolean continuation;
    final ArrayDeque<InFlight> inFlight = new ArrayDeque<>();
    private final Runnable closeConnection;

    Pipe(Runnable closeConnection) {
      this.closeConnection = closeConnection;
    }

    Subscriber<byte[]> upstreamSubscriber() {
      return new Subscriber<>() {
        @Override
        public void onSubscribe(Subscription s) {
          serial.execute(
              () -> {
                if (closed || upstream != null) {
                  s.cancel();
                  return;
                }
                upstream = s;
                pump();
              });
        }

        @Override
        public void onNext(byte[] frame) {
          serial.execute(() -> transmit(frame));
        }

        @Override
        public void onError(Throwable t) {
          log.warn("local link sender failed; closing", t);
          serial.execute(Pipe.this::close);
        }

        @Override
        public void onComplete() {
          serial.execute(() -> closeAfterDelivery = true);
          serial.execute(Pipe.this::deliver);
        }
      };
    }

    void subscribeReceiver(Subscriber<? super byte[]> s) {
      if (!receiverClaimed.compareAndSet(false, true)) {
        Operators.error(s, new IllegalStateException("a link accepts one receiver"));
        return;
      }
      // Queued before any request of s, so the receiver is set when its demand arrives.
      serial.execute(() -> receiver = s);
      s.onSubscribe(
          new Subscription() {
            @Override
            public void request(long n) {
              if (!Operators.validate(n)) {
                return;
              }
              serial.execute(
                  () -> {
                    receiverDemand = receiverDemand + n < 0 ? Long.MAX_VALUE : receiverDemand + n;
                    deliver();
                  });
            }

            @Override
            public void cancel() {
              serial.execute(() -> receiver = null);
            }
          });
      serial.execute(
          () -> {
            if (closed && receiver == s) {
              s.onComplete();
            }
          });
    }

    private void pump() {
      Subscription up = upstream;
      if (closed || up == null || busy || requestedFromSender > 0) {
        return;
      }
      long credit = receiverDemand - inFlight.size();
      if (credit <= 0) {
        return;
      }
      long n = bytesPerSecond > 0 ? 1 : credit;
      requestedFromSender += n;
      up.request(n);
    }

    private void transmit(byte[] frame) {
      if (closed) {
        return;
      }
      requestedFromSender--;
      if (frame.length == 0) {
        pump(); // Link.END_OF_BURST: nothing to carry, and each frame is delivered at once anyway
        return;
      }
      long now = scheduler.now(TimeUnit.NANOSECONDS);
      // A frame requested the moment the link became free starts when it became free, so timer
      // and scheduling latency never accumulate into lost bandwidth; an idle link starts now.
      long start = continuation && now - linkFreeAt <= CONTINUATION_SLACK_NANOS ? linkFreeAt : now;
      continuation = false;
      bytes.addAndGet(frame.length);
      long txNanos = bytesPerSecond > 0 ? frame.length * 1_000_000_000L / bytesPerSecond : 0;
      long end = Math.max(start, linkFreeAt) + txNanos;
      inFlight.add(new InFlight(frame, end + latency.toNanos()));
      if (txNanos > 0) {
        busy = true;
        linkFreeAt = end;
        scheduler.schedule(
            () -> serial.execute(this::linkFree), Math.max(0, end - now), TimeUnit.NANOSECONDS);
      }
      deliver();
    }

    private void linkFree() {
      busy = false;
      continuation = true;
      pump();
      if (requestedFromSender == 0) {
        continuation = false;
      }
    }

    /** Arms the delivery timer for the head frame if it is not due yet. */
    private void scheduleDelivery() {
      if (deliveryScheduled || inFlight.isEmpty()) {
        return;
      }
      long delay = inFlight.peek().due - scheduler.now(TimeUnit.NANOSECONDS);
      if (delay <= 0) {
        return; // due: delivered as soon as the receiver has demand
      }
      deliveryScheduled = true;
      scheduler.schedule(
          () ->
              serial.execute(
                  () -> {
                    deliveryScheduled = false;
                    deliver();
                  }),
          delay,
          TimeUnit.NANOSECONDS);
    }

    /** Hands every due frame to the receiver, within its demand. */
    private void deliver() {
      long now = scheduler.now(TimeUnit.NANOSECONDS);
      while (!closed && !inFlight.isEmpty() && inFlight.peek().due <= now) {
        Subscriber<? super byte[]> r = receiver;
        if (r == null || receiverDemand == 0) {
          break;
        }
        InFlight f = inFlight.poll();
        receiverDemand--;
        r.onNext(f.frame);
      }
      if (closeAfterDelivery && inFlight.isEmpty() && !closed) {
        closeConnection.run();
        return;
      }
      scheduleDelivery();
      pump();
    }

    void close() {
      serial.execute(
          () -> {
            if (closed) {
              return;
            }
            closed = true;
            inFlight.clear();
            Subscription up = upstream;
            if (up != null) {
              up.cancel();
            }
            Subscriber<? super byte[]> r = receiver;
            receiver = null;
            if (r != null) {
              r.onComplete();
            }
          });
    }
  }

  private record InFlight(byte[] frame, long due) {}
}
