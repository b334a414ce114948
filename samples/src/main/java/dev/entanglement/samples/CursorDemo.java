package dev.entanglement.samples;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicReference;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;

/**
 * The main job until the command-line node exists: a pointer moves at 1,000 updates per second on
 * one node; another node watches it over a link limited to a few kilobytes per second. Each second
 * it prints where the pointer is, what the slow viewer shows, how old that is, and how many updates
 * were produced versus sent. The viewer jumps to where the pointer is now; its lag does not grow.
 *
 * <p>Arguments: {@code [seconds] [bytesPerSecond]}; defaults 10 and 4000.
 */
public final class CursorDemo {
  record Pointer(String id, double x, double y, long seq) {}

  static final SyncType<Pointer> POINTER = SyncType.of("Pointer", Pointer.class, Pointer::id);

  private CursorDemo() {}

  public static void main(String[] args) {
    int seconds = args.length > 0 ? Integer.parseInt(args[0]) : 10;
    long bandwidth = args.length > 1 ? Long.parseLong(args[1]) : 4_000;
    Registry registry = Registry.builder("demo").type(POINTER).build();
    EntanglementNode owner = EntanglementNode.builder().id("owner").registry(registry).build();
    EntanglementNode viewer = EntanglementNode.builder().id("viewer").registry(registry).build();
    LocalTransport.Connection link =
        LocalTransport.builder().bandwidth(bandwidth).build()
            .connect(PeerId.of("owner"), PeerId.of("viewer"));
    Disposable a = owner.attach(link.a()).subscribe();
    Disposable b = viewer.attach(link.b()).subscribe();

    AtomicReference<Snapshot<Pointer>> seen = new AtomicReference<>();
    Disposable watch = viewer.watch(POINTER, "mouse").subscribe(seen::set);
    AtomicReference<Pointer> now = new AtomicReference<>();
    long start = System.nanoTime();
    Disposable mover =
        Flux.interval(Duration.ofMillis(1))
            .onBackpressureDrop()
            .map(i -> {
              double t = (System.nanoTime() - start) / 1e9;
              return new Pointer("mouse", 400 + 300 * Math.cos(t), 300 + 200 * Math.sin(2 * t), i);
            })
            .concatMap(p -> {
              now.set(p);
              return owner.publish(p);
            })
            .subscribe();

    System.out.printf(Locale.ROOT, "Pointer at 1,000 updates/s; viewer link limited to %,d bytes/s%n", bandwidth);
    System.out.println(" t  | pointer (owner)      | viewer shows          | age ms | produced/sent");
    Flux.interval(Duration.ofSeconds(1))
        .take(seconds)
        .doOnNext(i -> {
          Pointer p = now.get();
          Snapshot<Pointer> s = seen.get();
          NodeStats st = owner.stats();
          System.out.printf(Locale.ROOT, "%3d | %7.1f, %7.1f (#%d) | %s | %6s | %d/%d%n",
              i + 1,
              p == null ? 0 : p.x(), p == null ? 0 : p.y(), p == null ? 0 : p.seq(),
              s == null ? "   (nothing yet)     " : String.format(Locale.ROOT, "%7.1f, %7.1f (#%d)",
                  s.value().x(), s.value().y(), s.value().seq()),
              s == null ? "-" : String.valueOf(System.currentTimeMillis() - s.committedAt()),
              p == null ? 0 : p.seq() + 1,
              st.framesSent());
        })
        .blockLast();
    mover.dispose();
    watch.dispose();
    a.dispose();
    b.dispose();
    owner.close().block();
    viewer.close().block();
    System.out.println("The viewer's age stays bounded by about one frame time; it never replays the path.");
  }
}
