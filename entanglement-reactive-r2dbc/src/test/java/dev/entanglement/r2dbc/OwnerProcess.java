package dev.entanglement.r2dbc;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.netty.TcpServerTransport;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.LinkedBlockingQueue;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * An owner node on an H2 file store, in its own JVM, for {@link KillAndRestartTest}. Test code only.
 *
 * <p>Arguments: {@code <store path> <keys>}. The node (id {@value #NODE_ID}, owner {@value
 * #OWNER}, epoch left to its default) starts on {@code R2dbcStateStore.h2File(<store path>)} with
 * a claim that lasts 2 s (so that the restart after the kill waits at most that long for it),
 * accepts peers over plain TCP on 127.0.0.1 (an ephemeral port), prints {@code READY <epoch of the
 * node's builder> <port>}, then publishes {@code Counter(key-i, n)} for
 * n = 1, 2, 3... on every key at once (one publish in flight per key, so the engine folds them into
 * group commits), forever. After each publish Mono completes — the commit is durable — it prints
 * {@code ACK <key> <n> <epoch> <serial>}. A publish that fails prints {@code FAILED <key> <n>
 * <exception>}.
 *
 * <p>Stdout carries only those lines, each flushed; logging goes to stderr. The process exits when
 * its stdin ends, so a child whose test JVM died does not outlive it; the test kills it with
 * SIGKILL.
 */
public final class OwnerProcess {
  static final String NODE_ID = "owner";
  static final String OWNER = "owner-A";

  /** The object each commit writes: {@code n} increases by one per commit of a key. */
  public record Counter(String id, long n) {}

  static final SyncType<Counter> COUNTER = SyncType.of("Counter", Counter.class, Counter::id);

  static Registry registry() {
    return Registry.builder("kill-and-restart").type(COUNTER).build();
  }

  static String key(int i) {
    return "key-" + i;
  }

  private static final Duration WAIT = Duration.ofSeconds(30);

  private OwnerProcess() {}

  public static void main(String[] args) throws Exception {
    // Whatever a library prints to stdout must not be mistaken for an event.
    PrintStream stdout = System.out;
    System.setOut(System.err);
    LinkedBlockingQueue<String> lines = new LinkedBlockingQueue<>();
    // One plain thread writes stdout, in order, a line at a time: reactive threads only enqueue.
    Thread writer =
        new Thread(
            () -> {
              try {
                while (true) {
                  stdout.println(lines.take());
                  stdout.flush();
                }
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            },
            "owner-stdout");
    writer.setDaemon(true);
    writer.start();
    // The end of stdin means the test JVM is gone: exit.
    Thread stdin =
        new Thread(
            () -> {
              try (InputStream in = System.in) {
                while (in.read() >= 0) {
                  // ignore input
                }
              } catch (Exception e) {
                // treat as end of input
              }
              Runtime.getRuntime().halt(3);
            },
            "owner-stdin");
    stdin.setDaemon(true);
    stdin.start();

    Path storePath = Path.of(args[0]);
    int keys = Integer.parseInt(args[1]);
    long builderEpoch = System.currentTimeMillis();
    EntanglementNode node =
        EntanglementNode.builder()
            .id(NODE_ID)
            .owner(OwnerId.of(OWNER))
            .registry(registry())
            .store(R2dbcStateStore.h2File(storePath).withClaimTtl(java.time.Duration.ofSeconds(2)))
            .epoch(builderEpoch)
            .build();
    node.start().block(WAIT);
    int port =
        TcpServerTransport.builder(node).unknownDestination(peer -> Mono.just(true)).build().bind().block(WAIT).port();
    lines.add("READY " + builderEpoch + " " + port);

    Flux.range(0, keys)
        .flatMap(
            i ->
                Flux.range(1, Integer.MAX_VALUE)
                    .concatMap(
                        n ->
                            node.publish(new Counter(key(i), n))
                                .doOnNext(s -> lines.add(ack(s)))
                                .onErrorResume(
                                    e -> {
                                      lines.add("FAILED " + key(i) + " " + n + " "
                                          + e.toString().replace('\n', ' '));
                                      return Mono.empty();
                                    }),
                        1),
            keys)
        .subscribe();
    // Publishing goes on until the process is killed (or its stdin ends).
    writer.join();
  }

  private static String ack(Snapshot<Counter> s) {
    Counter c = s.require();
    return "ACK " + c.id() + " " + c.n() + " " + s.version().epoch() + " " + s.version().serial();
  }
}
