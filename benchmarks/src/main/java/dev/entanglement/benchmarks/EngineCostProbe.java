package dev.entanglement.benchmarks;

import com.sun.management.ThreadMXBean;
import dev.entanglement.EntanglementNode;
import dev.entanglement.Outcome;
import dev.entanglement.PeerId;
import dev.entanglement.protocol.FrameCodec;
import dev.entanglement.protocol.Message;
import dev.entanglement.transport.Link;
import dev.entanglement.transport.LocalTransport;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import tools.jackson.databind.json.JsonMapper;

/**
 * In one process and without a network, the engine's cost per SYNC on each side of B2:
 * the receive path (decode, apply, store, notify) against decoding alone, and the publish path
 * (commit, queue, encode) against encoding alone. With {@code side=propose}, B4's path instead:
 * a {@code propose → Committed} round trip between two nodes joined by a {@link LocalTransport}
 * that delivers on the sending thread (so both nodes' work runs on the calling thread), against
 * the codec work such a round trip needs at least (encode and decode the PROPOSE, encode the new
 * SYNC, wrap it in the RESPONSE, decode that binding the value). For receive and send, the
 * node's scheduler is one thread and the measured loops run on it, so that the engine runs every
 * task on the loop's thread (its timers wait for the loop); "ours" is still timed until the engine
 * has delivered every state (receive) or handed every frame to the link (send), in case it handed
 * work on all the same. Reports ns per frame or round trip, bytes allocated per frame or round
 * trip (on every thread) and GC time for each measured round (the second half), then a summary
 * line per loop (median and minimum ns/op, bytes), so that a change to the engine's per-state work can be
 * judged in seconds and without the noise of two processes sharing two cores; the bytes are the
 * steady figure on a noisy machine.
 *
 * <pre>java -cp benchmarks/target/benchmarks.jar dev.entanglement.benchmarks.EngineCostProbe</pre>
 *
 * Options: {@code objects} (100000; round trips per round for {@code propose}), {@code rounds}
 * (20; the first half is warm-up), {@code side} ({@code both}: receive and send; {@code receive},
 * {@code send}, {@code propose}), {@code burst} (256: the receive side's link marks the end of a
 * burst after this many frames, as a TCP link marks each read, so the engine looks a burst's
 * objects up together; 0: no marks, a frame at a time).
 */
public final class EngineCostProbe {
  private static final String OWNER = "owner-probe";

  private static final tools.jackson.databind.ObjectReader ITEM_READER =
      JsonMapper.builder().build().readerFor(Payload.Item.class)
          .without(tools.jackson.databind.DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

  private EngineCostProbe() {}

  public static void main(String[] args) throws Exception {
    Options o = Options.parse(args, "objects", "rounds", "side", "burst");
    int objects = o.integer("objects", 100_000);
    int rounds = o.integer("rounds", 20);
    String side = o.string("side", "both");
    int burst = o.integer("burst", 256);
    String[] ids = Payload.ids(objects, 42);
    String[] labels = Payload.labels(objects);
    switch (side) {
      case "both" -> {
        receive(ids, labels, rounds, burst);
        send(ids, labels, rounds);
      }
      case "receive" -> receive(ids, labels, rounds, burst);
      case "send" -> send(ids, labels, rounds);
      case "propose" -> propose(objects, rounds);
      default -> throw new IllegalArgumentException("side must be both, receive, send or propose: " + side);
    }
    Sample.printSummary();
  }

  private static void propose(int count, int rounds) {
    FrameCodec codec = new FrameCodec();
    JsonMapper json = JsonMapper.builder().build();
    EntanglementNode owner =
        EntanglementNode.builder().id("probe-owner").registry(Payload.registry()).build();
    EntanglementNode proposer =
        EntanglementNode.builder().id("probe-proposer").registry(Payload.registry()).build();
    LocalTransport.Connection c =
        LocalTransport.builder().scheduler(Schedulers.immediate()).build()
            .connect(PeerId.of("probe-owner"), PeerId.of("probe-proposer"));
    owner.attach(c.a()).subscribe();
    proposer.attach(c.b()).subscribe();
    String key = "00000000-0000-0000-0000-000000000001";
    owner.publish(Payload.ITEM, Payload.item(key, 0, 1, "latency")).block(Duration.ofSeconds(5));
    if (proposer.get(Payload.ITEM, key).isEmpty()) {
      throw new IllegalStateException("the proposer did not receive the object");
    }
    String ownerId = owner.owner().value();
    long serial = 0;
    for (int r = 0; r < rounds; r++) {
      Sample ours = Sample.start();
      for (int i = 0; i < count; i++) {
        Object outcome =
            proposer.propose(Payload.ITEM, key, Map.of("serial", ++serial)).block(Duration.ofSeconds(5));
        if (!(outcome instanceof Outcome.Committed)) {
          throw new IllegalStateException("round trip " + serial + ": " + outcome);
        }
      }
      ours.end("propose ours ", r, rounds, count);
      Sample floor = Sample.start();
      long sink = 0;
      for (int i = 0; i < count; i++) {
        byte[] request = codec.encode(new Message.Propose(i, Message.ProposalKind.UPDATE,
            Payload.ITEM.name(), key, ownerId, true, json.valueToTree(Map.of("serial", serial + i)), null, 0));
        Message.Propose p = (Message.Propose) codec.decode(request);
        byte[] sync = Payload.syncBody(codec, json,
            Payload.item(key, p.attributes().get("serial").asLong(), 1, "latency"), ownerId, 1, serial + i);
        byte[] response = codec.encodeResponse(p.requestId(), sync);
        sink += ((Payload.Item) codec.decodeResponse(response, (type, k, o) -> ITEM_READER).value()).serial();
      }
      floor.end("propose codec", r, rounds, count);
      if (sink == 42) {
        System.out.print("");
      }
    }
    c.close();
    proposer.close().block();
    owner.close().block();
  }

  private static void receive(String[] ids, String[] labels, int rounds, int burst) {
    FrameCodec codec = new FrameCodec();
    JsonMapper json = JsonMapper.builder().build();
    EntanglementNode node =
        EntanglementNode.builder()
            .id("probe-receiver")
            .registry(Payload.registry())
            .scheduler(PROBE)
            .build();
    node.start().block();
    AtomicLong seen = new AtomicLong();
    node.watchAll(Payload.ITEM).subscribe(s -> seen.incrementAndGet());
    ProbeLink link = new ProbeLink();
    node.attach(link).subscribe();
    link.push(codec.encode(new Message.Hello(
        FrameCodec.PROTOCOL_VERSION, "probe-sender", List.of(new Message.OwnerAd(OWNER, 1)), 1 << 20)));
    // The sender's first watermark ends the link's catch-up record of the owner's keys, as it does
    // in B2 within the first round; without it every key received would be recorded, a cost B2
    // does not pay.
    link.push(codec.encode(new Message.Watermark(OWNER, 1, 0, false)));
    if (burst > 0) {
      link.push(Link.END_OF_BURST); // from now on the link marks its bursts, as a TCP link does
    }
    for (int r = 0; r < rounds; r++) {
      byte[][] frames = new byte[ids.length][];
      for (int i = 0; i < ids.length; i++) {
        frames[i] = Payload.syncBody(codec, json, Payload.item(ids[i], r + 1, i, labels[i]), OWNER, 1, r + 1);
      }
      Sample ours = Sample.start();
      onProbeThread(() -> {
        for (int i = 0; i < frames.length; i++) {
          link.push(frames[i]);
          if (burst > 0 && ((i + 1) % burst == 0 || i == frames.length - 1)) {
            link.push(Link.END_OF_BURST);
          }
        }
      });
      awaitCount(seen, (long) (r + 1) * ids.length, "watchAll emissions");
      ours.end("receive ours", r, rounds, ids.length);
      Sample raw = Sample.start();
      long sink = 0;
      for (byte[] f : frames) {
        sink += ((Payload.Item) codec.decodeSync(f, (type, key, owner) -> ITEM_READER).value()).serial();
      }
      raw.end("receive raw ", r, rounds, ids.length);
      if (sink == 42) {
        System.out.print("");
      }
    }
    System.out.printf("receiver watchAll emissions %,d%n", seen.get());
    histogram("receiver");
    node.close().block();
  }

  private static void send(String[] ids, String[] labels, int rounds) {
    FrameCodec codec = new FrameCodec();
    JsonMapper json = JsonMapper.builder().build();
    EntanglementNode node =
        EntanglementNode.builder()
            .id("probe-sender")
            .registry(Payload.registry())
            .scheduler(PROBE)
            .build();
    node.start().block();
    ProbeLink link = new ProbeLink();
    node.attach(link).subscribe();
    link.push(codec.encode(new Message.Hello(
        FrameCodec.PROTOCOL_VERSION, "probe-receiver", List.of(), 1 << 20)));
    String owner = node.owner().value();
    for (int r = 0; r < rounds; r++) {
      long serial = r + 1;
      long sentBefore = link.sent.get();
      Sample ours = Sample.start();
      onProbeThread(() -> {
        for (int i = 0; i < ids.length; i++) {
          node.publish(Payload.ITEM, Payload.item(ids[i], serial, i, labels[i])).subscribe();
        }
      });
      awaitCount(link.sent, sentBefore + ids.length, "frames sent");
      ours.end("send ours   ", r, rounds, ids.length);
      Sample raw = Sample.start();
      long bytes = 0;
      for (int i = 0; i < ids.length; i++) {
        bytes += Payload.syncBody(codec, json, Payload.item(ids[i], serial, i, labels[i]), owner, 1, serial).length;
      }
      raw.end("send raw    ", r, rounds, ids.length);
      if (bytes == 42) {
        System.out.print("");
      }
    }
    System.out.printf("sender frames out %,d%n", link.sent.get());
    histogram("sender");
    node.close().block();
  }

  /** The top of the live heap's class histogram (a full GC), while the node still holds its objects. */
  private static void histogram(String who) {
    if (!Boolean.getBoolean("probe.histogram")) {
      return;
    }
    try {
      Object text = ManagementFactory.getPlatformMBeanServer().invoke(
          new javax.management.ObjectName("com.sun.management:type=DiagnosticCommand"),
          "gcClassHistogram", new Object[] {null}, new String[] {String[].class.getName()});
      System.out.println(who + " live heap:");
      text.toString().lines().limit(25).forEach(System.out::println);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * The receiving and sending nodes' scheduler, and the thread their measured loops run on: the
   * engine's timers then run only between loops, so no other thread takes the engine's executor
   * while a loop submits, and the engine runs every task on the loop's thread.
   */
  private static final Scheduler PROBE = Schedulers.newSingle("probe", true);

  private static void onProbeThread(Runnable loop) {
    Mono.fromRunnable(loop).subscribeOn(PROBE).block(Duration.ofSeconds(120));
  }

  /**
   * Waits until {@code counter} reaches {@code target}: the engine may have handed its work to
   * the scheduler's thread (it runs at most a batch on the caller's), and then a loop of pushes or
   * publishes returns before the work is done.
   */
  private static void awaitCount(AtomicLong counter, long target, String what) {
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    while (counter.get() < target) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException(what + ": " + counter.get() + " of " + target + " after 60 s");
      }
      Thread.onSpinWait();
    }
  }

  /**
   * Elapsed time, allocation on every live thread (the engine's work may run on the scheduler's)
   * and GC time over one measured loop.
   */
  private record Sample(long nanos, long bytes, long gcAtStart) {
    private static final ThreadMXBean THREADS = (ThreadMXBean) ManagementFactory.getThreadMXBean();

    static Sample start() {
      return new Sample(System.nanoTime(), allocated(), gcMillis());
    }

    static long allocated() {
      long sum = 0;
      for (long b : THREADS.getThreadAllocatedBytes(THREADS.getAllThreadIds())) {
        sum += Math.max(0, b);
      }
      return sum;
    }

    void end(String what, int round, int rounds, int n) {
      long t = System.nanoTime() - nanos;
      long b = allocated() - bytes;
      long gc = gcMillis() - gcAtStart;
      if (round >= rounds / 2) {
        System.out.printf("round %2d %s %7.0f ns/op %6d B/op  gc %4d ms%n", round, what,
            (double) t / n, b / n, gc);
        String loop = what.strip();
        MEASURED.computeIfAbsent(loop, k -> new ArrayList<>()).add((double) t / n);
        BYTES.put(loop, b / n);
      }
    }

    /** ns per operation of every measured round, and the last round's bytes, by loop. */
    private static final Map<String, List<Double>> MEASURED = new LinkedHashMap<>();
    private static final Map<String, Long> BYTES = new LinkedHashMap<>();

    /**
     * One line per loop: the median and the minimum over the measured rounds. On a shared machine
     * the rounds of one run scatter by tens of percent; compare medians of runs of two builds
     * alternated, and the bytes, which do not scatter.
     */
    static void printSummary() {
      MEASURED.forEach((loop, ns) -> {
        double[] values = ns.stream().mapToDouble(Double::doubleValue).toArray();
        System.out.printf("summary %s: median %.0f ns/op, min %.0f over %d rounds, %d B/op%n",
            loop, Measure.median(values), Arrays.stream(values).min().orElse(Double.NaN),
            values.length, BYTES.get(loop));
      });
    }

    static long gcMillis() {
      long sum = 0;
      for (GarbageCollectorMXBean g : ManagementFactory.getGarbageCollectorMXBeans()) {
        sum += g.getCollectionTime();
      }
      return sum;
    }
  }

  /**
   * A link whose inbound frames are pushed by the caller (and so processed on the caller's thread
   * by the engine's trampoline) and whose outbound frames are requested without bound and dropped.
   */
  private static final class ProbeLink implements Link {
    private final Sinks.Empty<Void> closed = Sinks.empty();
    private final AtomicLong sent = new AtomicLong();
    private FluxSink<byte[]> inbound;

    @Override
    public PeerId remote() {
      return PeerId.of("probe-peer");
    }

    @Override
    public Flux<byte[]> receive() {
      return Flux.create(s -> inbound = s);
    }

    void push(byte[] frame) {
      inbound.next(frame);
    }

    @Override
    public Mono<Void> send(Publisher<byte[]> frames) {
      frames.subscribe(new Subscriber<byte[]>() {
        @Override
        public void onSubscribe(Subscription s) {
          s.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(byte[] f) {
          if (f.length > 0) { // not Link.END_OF_BURST
            sent.incrementAndGet();
          }
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onComplete() {}
      });
      return closed.asMono();
    }

    @Override
    public Mono<Void> onClose() {
      return closed.asMono();
    }

    @Override
    public void dispose() {
      closed.tryEmitEmpty();
    }
  }
}
