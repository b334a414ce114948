package dev.entanglement.r2dbc;

import static dev.entanglement.r2dbc.OwnerProcess.COUNTER;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Snapshot;
import dev.entanglement.Version;
import dev.entanglement.netty.TcpClientTransport;
import dev.entanglement.netty.TcpServerTransport;
import dev.entanglement.r2dbc.OwnerProcess.Counter;
import dev.entanglement.transport.LocalTransport;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Mono;

/**
 * An owner on an H2 file store ({@link OwnerProcess}, in a child JVM) is killed with SIGKILL in the
 * middle of a stream of commits, then restarted (in this JVM) on the same store and the same TCP
 * port: every commit it acknowledged is there, its epoch is kept, no serial is reused. Two
 * receivers run throughout (one dials the owner over TCP and redials after the kill, the other sits
 * behind it): nothing they received before the kill is missing from the store, and they converge to
 * exactly the restarted owner's versions; so does a receiver that connects afterwards. No receiver
 * ever sees a version of a key regress.
 */
@Timeout(60)
class KillAndRestartTest {
  private static final Duration WAIT = Duration.ofSeconds(30);
  private static final int KEYS = 5;
  /** Acknowledged commits awaited before the kill: the kill lands in the middle of the stream. */
  private static final int ACKS_BEFORE_KILL = 400;

  @TempDir static Path classpathCopy;
  private static String classpath;

  @TempDir Path dir;

  private Child child;
  /** Run in reverse order after each test. */
  private final List<Runnable> cleanup = new ArrayList<>();
  private final long started = System.nanoTime();

  @BeforeAll
  static void copyClasspath() throws ClassNotFoundException {
    // This JVM loads the test's own classes lazily from target/test-classes, which a concurrent
    // build may be rewriting: load them all now, while they are known to be there.
    for (Class<?> c : List.of(OwnerProcess.class, Counter.class, Ack.class, Child.class)) {
      Class.forName(c.getName(), true, KillAndRestartTest.class.getClassLoader());
    }
    classpath = snapshotClasspath(classpathCopy);
  }

  @AfterEach
  void tearDown() {
    if (child != null) {
      child.kill();
    }
    List<Runnable> reversed = new ArrayList<>(cleanup);
    Collections.reverse(reversed);
    for (Runnable r : reversed) {
      try {
        r.run();
      } catch (RuntimeException e) {
        System.err.println("[KillAndRestartTest] cleanup failed: " + e);
      }
    }
  }

  /** One acknowledged commit, as the child printed it. */
  record Ack(String key, long n, long epoch, long serial) {
    static Ack parse(String line) {
      String[] f = line.split(" ");
      if (f.length != 5 || !f[0].equals("ACK")) {
        throw new IllegalArgumentException("not an ACK line: " + line);
      }
      return new Ack(f[1], Long.parseLong(f[2]), Long.parseLong(f[3]), Long.parseLong(f[4]));
    }

    Version version() {
      return new Version(epoch, serial);
    }
  }

  @Test
  @DisplayName("an owner killed with SIGKILL mid-stream restarts on its H2 file with every acknowledged "
      + "commit, the same epoch and no reused serial, and a receiver catches up to exactly its versions")
  void ackedCommitsSurviveSigkillAndAReceiverCatchesUp() {
    Path storePath = dir.resolve("owner");

    // ------------------------------------------------ the owner commits in a child JVM, then dies
    child = Child.start("owner", classpath, dir, List.of(storePath.toString(), Integer.toString(KEYS)));
    String[] ready = child.awaitFrom(0, "READY", l -> l.startsWith("READY "), WAIT).split(" ");
    long builderEpoch = Long.parseLong(ready[1]);
    int port = Integer.parseInt(ready[2]);
    step("child ready (builder epoch " + builderEpoch + ", port " + port + ")");
    Running running = startReceivers(port);
    for (EntanglementNode r : running.nodes()) {
      for (int i = 0; i < KEYS; i++) {
        r.watch(COUNTER, OwnerProcess.key(i)).blockFirst(WAIT);
      }
    }
    step("the running receivers hold every key");
    child.awaitCount("ACK ", ACKS_BEFORE_KILL, WAIT);
    step(ACKS_BEFORE_KILL + " ACKs received; killing the child with SIGKILL");
    child.kill();
    // Every line the child printed before it died is now read.
    child.awaitEnd(WAIT);
    List<String> lines = child.lines();
    String diagnostics = child.diagnostics();
    awaitDisconnected(running.nodes().get(0));
    // What the receivers got from the owner before it died: all of it must be in the store.
    List<Map<String, Snapshot<Counter>>> heldAtKill = new ArrayList<>();
    for (EntanglementNode r : running.nodes()) {
      Map<String, Snapshot<Counter>> held = new LinkedHashMap<>();
      for (int i = 0; i < KEYS; i++) {
        r.get(COUNTER, OwnerProcess.key(i)).ifPresent(snap -> held.put(snap.key().key(), snap));
      }
      heldAtKill.add(held);
    }

    assertTrue(
        lines.stream().noneMatch(l -> l.startsWith("FAILED ")),
        "a publish failed in the child" + diagnostics);
    Map<String, Ack> lastAck = new LinkedHashMap<>();
    long maxAckedSerial = 0;
    int acks = 0;
    for (String l : lines) {
      if (!l.startsWith("ACK ")) {
        continue;
      }
      Ack a = Ack.parse(l);
      acks++;
      assertEquals(builderEpoch, a.epoch(), "a new store starts the builder's epoch: " + l + diagnostics);
      Ack previous = lastAck.get(a.key());
      if (previous != null) {
        // One publish in flight per key: each ACK of a key is the next n, at a higher serial.
        assertEquals(previous.n() + 1, a.n(), "ACKs of " + a.key() + " in order: " + l + diagnostics);
        assertTrue(a.serial() > previous.serial(), "serials of " + a.key() + " increase: " + l + diagnostics);
      }
      maxAckedSerial = Math.max(maxAckedSerial, a.serial());
      lastAck.put(a.key(), a);
    }
    assertTrue(acks >= ACKS_BEFORE_KILL, "ACK count " + acks + diagnostics);
    assertEquals(KEYS, lastAck.size(), "every key was acknowledged at least once: " + lastAck + diagnostics);
    long ackedEpoch = builderEpoch;
    step(acks + " ACKs in all before the kill; last per key " + lastAck.values() + ", max serial " + maxAckedSerial);

    // ------------------------------------------------ restart on the same store, in this JVM
    R2dbcStateStore ownerStore = R2dbcStateStore.h2File(storePath);
    cleanup.add(() -> ownerStore.close().block(WAIT));
    // Another builder epoch: only the store can make the restarted owner keep the old one.
    long restartBuilderEpoch = builderEpoch + 1_000_000;
    EntanglementNode owner =
        EntanglementNode.builder()
            .id(OwnerProcess.NODE_ID)
            .owner(OwnerId.of(OwnerProcess.OWNER))
            .registry(OwnerProcess.registry())
            .store(ownerStore)
            .epoch(restartBuilderEpoch)
            .build();
    cleanup.add(() -> owner.close().block(WAIT));
    owner.start().block(WAIT);
    var server = TcpServerTransport.builder(owner).port(port).unknownDestination(peer -> Mono.just(true))
        .build().bind().block(WAIT);
    cleanup.add(server::disposeNow);
    step("owner restarted in-process on the same store and port");

    // What the restarted owner must hold. Checked softly, so that one run reports every violation
    // and still runs the receiver part; the test fails at the end if any was found.
    List<String> violations = new ArrayList<>();
    long maxStoredSerial = 0;
    for (Ack last : lastAck.values()) {
      Optional<Snapshot<Counter>> stored = owner.get(COUNTER, last.key());
      if (stored.isEmpty()) {
        violations.add("acknowledged " + last + " but the restarted owner has no " + last.key());
        continue;
      }
      Snapshot<Counter> s = stored.get();
      if (s.deleted() || !s.owner().equals(OwnerId.of(OwnerProcess.OWNER))) {
        violations.add("acknowledged " + last + " but the restarted owner holds " + s);
        continue;
      }
      if (s.version().epoch() != ackedEpoch) {
        violations.add("epoch changed: " + last.key() + " was acknowledged in epoch " + ackedEpoch
            + " but the restarted owner holds " + s.version());
      }
      if (s.require().n() < last.n() || last.version().isNewerThan(s.version())) {
        violations.add("acknowledged commit lost: last ACK of " + last.key() + " was n=" + last.n() + " at "
            + last.version() + " but the restarted owner holds n=" + s.require().n() + " at " + s.version());
      } else if (s.version().equals(last.version()) && s.require().n() != last.n()) {
        violations.add("version " + s.version() + " of " + last.key() + " was acknowledged with n=" + last.n()
            + " but the restarted owner holds n=" + s.require().n() + " at it");
      }
      maxStoredSerial = Math.max(maxStoredSerial, s.version().serial());
    }
    for (int r = 0; r < heldAtKill.size(); r++) {
      for (Snapshot<Counter> got : heldAtKill.get(r).values()) {
        Optional<Snapshot<Counter>> stored = owner.get(COUNTER, got.key().key());
        if (stored.isEmpty() || got.version().isNewerThan(stored.get().version())
            || (got.version().equals(stored.get().version()) && !got.value().equals(stored.get().value()))) {
          violations.add("running receiver " + r + " got " + got + " before the kill, but the restarted owner holds "
              + stored);
        }
      }
    }
    step("restarted owner checked against the ACKs and what the receivers held (max stored serial "
        + maxStoredSerial + ", " + violations.size() + " violations)");

    // The next commit keeps the epoch and takes a serial above everything ever assigned.
    String k0 = OwnerProcess.key(0);
    long n0 = owner.get(COUNTER, k0).map(s -> s.require().n()).orElse(0L);
    Snapshot<Counter> next = owner.publish(new Counter(k0, n0 + 1)).block(WAIT);
    if (next.version().epoch() != ackedEpoch) {
      violations.add("epoch changed: the next publish after the restart got " + next.version() + " (acknowledged epoch "
          + ackedEpoch + ", restart builder epoch " + restartBuilderEpoch + ")");
    }
    if (next.version().serial() <= maxAckedSerial) {
      violations.add("serial reused: the next publish after the restart got " + next.version() + " but serials up to "
          + maxAckedSerial + " were acknowledged (and flooded) before the kill");
    }
    if (next.version().serial() <= maxStoredSerial) {
      violations.add("serial reused: the next publish after the restart got " + next.version()
          + " but the store holds serial " + maxStoredSerial);
    }
    step("next publish after restart got " + next.version());

    // ------------------------------------------------ the receivers that kept running reconnect
    Throwable receiverFailure = null;
    try {
      for (EntanglementNode r : running.nodes()) {
        for (int i = 0; i < KEYS; i++) {
          String key = OwnerProcess.key(i);
          awaitVersion(r, key, owner.get(COUNTER, key).orElseThrow().version(), "reconnect of " + r.id());
        }
        assertSameVersions(owner, r);
      }
      assertEquals(List.of(), running.regressions(), "versions regressed at a running receiver; seen "
          + running.seen());
      step("the running receivers reconnected and converged");
    } catch (AssertionError | RuntimeException e) {
      receiverFailure = e;
      violations.add("running receivers: " + e);
    }

    // ------------------------------------------------ a receiver connects and catches up
    try {
      checkReceiver(owner, ackedEpoch, next);
    } catch (AssertionError | RuntimeException e) {
      receiverFailure = e;
      violations.add("receiver: " + e);
    }

    if (!violations.isEmpty()) {
      AssertionError e = new AssertionError(violations.size() + " violation(s) after SIGKILL and restart of the owner "
          + "(" + acks + " ACKs, last per key " + lastAck.values() + "):\n- " + String.join("\n- ", violations)
          + diagnostics);
      if (receiverFailure != null) {
        e.initCause(receiverFailure);
      }
      throw e;
    }
  }

  /** Receivers that run through the kill and restart, and every version each saw of each key. */
  private record Running(List<EntanglementNode> nodes, Map<String, List<Version>> seen, List<String> regressions) {}

  /**
   * Starts two in-memory receivers: {@code running-1} keeps dialing the owner at {@code port}
   * (redialing every 50–500 ms after a loss), {@code running-2} is linked to it in this JVM.
   */
  private Running startReceivers(int port) {
    Map<String, List<Version>> seen = new ConcurrentHashMap<>();
    List<String> regressions = Collections.synchronizedList(new ArrayList<>());
    EntanglementNode r1 = receiver("running-1", seen, regressions);
    EntanglementNode r2 = receiver("running-2", seen, regressions);
    var dialer = TcpClientTransport.builder(r1).remote("127.0.0.1", port).expect(PeerId.of(OwnerProcess.NODE_ID))
        .backoff(Duration.ofMillis(50), Duration.ofMillis(500)).build().maintain();
    cleanup.add(dialer::dispose);
    LocalTransport.Connection link = LocalTransport.create().connect(PeerId.of(r1.id()), PeerId.of(r2.id()));
    cleanup.add(link::close);
    r1.attach(link.a()).subscribe();
    r2.attach(link.b()).subscribe();
    return new Running(List.of(r1, r2), seen, regressions);
  }

  private static void awaitDisconnected(EntanglementNode r) {
    r.statsEvery(Duration.ofMillis(20))
        .filter(s -> s.peers().stream().noneMatch(p -> p.peer().equals(PeerId.of(OwnerProcess.NODE_ID))))
        .blockFirst(WAIT);
  }

  /**
   * A started in-memory receiver that records, under {@code seen} (keyed by its id and the key),
   * every version it sees of each key; a version that does not increase goes to {@code regressions}.
   */
  private EntanglementNode receiver(String id, Map<String, List<Version>> seen, List<String> regressions) {
    EntanglementNode receiver =
        EntanglementNode.builder()
            .id(id)
            .owner(OwnerId.of(id + "-owner"))
            .registry(OwnerProcess.registry())
            .build();
    cleanup.add(() -> receiver.close().block(WAIT));
    receiver.start().block(WAIT);
    for (int i = 0; i < KEYS; i++) {
      String key = OwnerProcess.key(i);
      List<Version> versions = Collections.synchronizedList(new ArrayList<>());
      seen.put(id + "/" + key, versions);
      var watch =
          receiver
              .watch(COUNTER, key)
              .subscribe(
                  s -> {
                    synchronized (versions) {
                      if (!versions.isEmpty() && !s.version().isNewerThan(versions.get(versions.size() - 1))) {
                        regressions.add(id + " " + key + ": " + s.version() + " after " + versions);
                      }
                      versions.add(s.version());
                    }
                  });
      cleanup.add(watch::dispose);
    }
    return receiver;
  }

  /**
   * A receiver (in memory) connects to the restarted owner, catches up to exactly its version of
   * every key, then receives a new commit by flood; its versions of a key only ever increase.
   */
  private void checkReceiver(EntanglementNode owner, long ackedEpoch, Snapshot<Counter> next) {
    Map<String, List<Version>> seen = new ConcurrentHashMap<>();
    List<String> regressions = Collections.synchronizedList(new ArrayList<>());
    EntanglementNode receiver = receiver("receiver", seen, regressions);
    LocalTransport.Connection link =
        LocalTransport.create().connect(PeerId.of("owner"), PeerId.of("receiver"));
    cleanup.add(link::close);
    owner.attach(link.a()).subscribe();
    receiver.attach(link.b()).subscribe();

    for (int i = 0; i < KEYS; i++) {
      String key = OwnerProcess.key(i);
      Optional<Snapshot<Counter>> held = owner.get(COUNTER, key);
      if (held.isPresent()) {
        awaitVersion(receiver, key, held.get().version(), "catch-up");
      }
    }
    assertSameVersions(owner, receiver);
    step("receiver caught up on every key");

    // A commit made after the catch-up floods to the receiver, above everything before it.
    String k1 = OwnerProcess.key(1);
    long n1 = owner.get(COUNTER, k1).map(s -> s.require().n()).orElse(0L);
    Snapshot<Counter> after = owner.publish(new Counter(k1, n1 + 1)).block(WAIT);
    assertEquals(ackedEpoch, after.version().epoch(), "epoch of the commit after catch-up: " + after);
    assertTrue(after.version().isNewerThan(next.version()), "serials keep increasing: " + after + " after " + next);
    awaitVersion(receiver, k1, after.version(), "flood after catch-up");
    assertSameVersions(owner, receiver);

    assertEquals(List.of(), regressions, "versions regressed (or repeated) at the receiver; seen " + seen);
    seen.forEach(
        (idAndKey, versions) -> {
          String key = idAndKey.substring(idAndKey.indexOf('/') + 1);
          synchronized (versions) {
            assertTrue(!versions.isEmpty() || owner.get(COUNTER, key).isEmpty(),
                "the receiver's watch of " + key + " saw nothing");
            assertTrue(versions.stream().allMatch(v -> v.epoch() == ackedEpoch),
                "the receiver saw another epoch for " + key + ": " + versions);
          }
        });
    step("receiver checked; it saw " + seen);
  }

  private void awaitVersion(EntanglementNode receiver, String key, Version want, String what) {
    Snapshot<Counter> got;
    try {
      got =
          receiver
              .watch(COUNTER, key)
              .filter(s -> !want.isNewerThan(s.version()))
              .blockFirst(WAIT);
    } catch (RuntimeException e) {
      throw new AssertionError(
          what + ": the receiver did not reach " + key + " at " + want + " within " + WAIT.toSeconds()
              + " s; it holds " + receiver.get(COUNTER, key) + child.diagnostics(), e);
    }
    assertEquals(want, got.version(), what + ": the receiver overshot the owner's version of " + key);
  }

  private static void assertSameVersions(EntanglementNode owner, EntanglementNode receiver) {
    for (int i = 0; i < KEYS; i++) {
      String key = OwnerProcess.key(i);
      Optional<Snapshot<Counter>> held = owner.get(COUNTER, key);
      Optional<Snapshot<Counter>> r = receiver.get(COUNTER, key);
      if (held.isEmpty()) {
        assertTrue(r.isEmpty(), "the receiver holds " + r + " which the owner does not hold");
        continue;
      }
      Snapshot<Counter> o = held.get();
      assertTrue(r.isPresent(), "the receiver lacks " + key + " (owner holds " + o + ")");
      assertEquals(o.version(), r.get().version(), "the receiver holds another version of " + key);
      assertEquals(o.value(), r.get().value(), "the receiver holds another value of " + key);
      assertEquals(o.owner(), r.get().owner(), "owner of " + key + " at the receiver");
    }
  }

  /** Progress on stderr, with the time since the test started: where the wall time goes. */
  private void step(String what) {
    System.err.printf("[KillAndRestartTest] %6.2f s  %s%n", (System.nanoTime() - started) / 1e9, what);
  }

  // ------------------------------------------------------------------ the child JVM

  /**
   * A copy of this JVM's classpath: directories and {@code -SNAPSHOT} jars are copied under {@code
   * into}, so that a concurrent rebuild of the project (which rewrites {@code target/}) cannot hand
   * the child half-written classes; release jars are used in place.
   */
  static String snapshotClasspath(Path into) {
    List<String> entries = new ArrayList<>();
    int n = 0;
    for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
      if (entry.isEmpty()) {
        continue;
      }
      Path source = Path.of(entry);
      Path target = into.resolve((n++) + "-" + source.getFileName());
      try {
        if (Files.isDirectory(source)) {
          try (Stream<Path> files = Files.walk(source)) {
            for (Path f : (Iterable<Path>) files::iterator) {
              Path t = target.resolve(source.relativize(f).toString());
              if (Files.isDirectory(f)) {
                Files.createDirectories(t);
              } else {
                Files.copy(f, t, StandardCopyOption.REPLACE_EXISTING);
              }
            }
          }
          entries.add(target.toString());
        } else if (Files.isRegularFile(source) && source.getFileName().toString().contains("-SNAPSHOT")) {
          Files.copy(source, target);
          entries.add(target.toString());
        } else {
          entries.add(entry);
        }
      } catch (IOException e) {
        throw new UncheckedIOException("cannot copy classpath entry " + entry, e);
      }
    }
    String cp = String.join(File.pathSeparator, entries);
    String main = OwnerProcess.class.getName().replace('.', '/') + ".class";
    if (entries.stream().noneMatch(e -> Files.isRegularFile(Path.of(e).resolve(main)))) {
      throw new IllegalStateException("the copied classpath lacks " + main + ": " + cp);
    }
    return cp;
  }

  /**
   * {@link OwnerProcess} in a child JVM. A plain thread reads its stdout into a queue, so the test
   * awaits lines with timeouts; its stderr (its log) goes to a file quoted by failure messages.
   * Use from the test thread only.
   */
  static final class Child {
    /** End of the child's stdout, compared by identity. */
    private static final String EOF = new String("<end of stdout>");

    private final String name;
    private final Process process;
    private final File stderr;
    private final BlockingQueue<String> queue = new LinkedBlockingQueue<>();
    private final List<String> seen = new ArrayList<>();
    private boolean ended;

    private Child(String name, Process process, File stderr) {
      this.name = name;
      this.process = process;
      this.stderr = stderr;
      Thread reader =
          new Thread(
              () -> {
                try (BufferedReader r =
                    new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                  for (String l = r.readLine(); l != null; l = r.readLine()) {
                    queue.add(l);
                  }
                } catch (IOException e) {
                  // the child was killed: its stdout ends here
                } finally {
                  queue.add(EOF);
                }
              },
              "stdout-" + name);
      reader.setDaemon(true);
      reader.start();
    }

    static Child start(String name, String classpath, Path logDir, List<String> args) {
      String java =
          ProcessHandle.current()
              .info()
              .command()
              .orElse(System.getProperty("java.home") + File.separator + "bin" + File.separator + "java");
      List<String> command = new ArrayList<>();
      command.add(java);
      command.add("-cp");
      command.add(classpath);
      // Start fast: this JVM lives for seconds.
      command.add("-XX:TieredStopAtLevel=1");
      command.add("-XX:+UseSerialGC");
      command.add("-Dorg.slf4j.simpleLogger.showDateTime=true");
      command.add("-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS");
      command.add(OwnerProcess.class.getName());
      command.addAll(args);
      File err = logDir.resolve(name + ".stderr").toFile();
      ProcessBuilder pb =
          new ProcessBuilder(command)
              .redirectError(err)
              .redirectOutput(ProcessBuilder.Redirect.PIPE)
              .redirectInput(ProcessBuilder.Redirect.PIPE);
      try {
        return new Child(name, pb.start(), err);
      } catch (IOException e) {
        throw new UncheckedIOException("cannot start child JVM " + name, e);
      }
    }

    /** Every stdout line received so far. */
    List<String> lines() {
      drain();
      return List.copyOf(seen);
    }

    /** Awaits a line matching {@code test}, received at or after position {@code from}. */
    String awaitFrom(int from, String what, Predicate<String> test, Duration timeout) {
      drain();
      for (int i = from; i < seen.size(); i++) {
        if (test.test(seen.get(i))) {
          return seen.get(i);
        }
      }
      long deadline = System.nanoTime() + timeout.toNanos();
      while (true) {
        if (ended) {
          fail(name + ": stdout ended (" + exitCode() + ") before " + what + diagnostics());
        }
        String l = poll(deadline, what);
        if (l == null) {
          fail(name + ": no " + what + " within " + timeout.toSeconds() + " s" + diagnostics());
        }
        if (accept(l) && test.test(l)) {
          return l;
        }
      }
    }

    /** Awaits the {@code count}-th line (in all) that starts with {@code prefix}. */
    void awaitCount(String prefix, int count, Duration timeout) {
      int[] n = {0};
      awaitFrom(0, count + " lines starting with '" + prefix + "'", l -> l.startsWith(prefix) && ++n[0] >= count, timeout);
    }

    /** Awaits the end of the child's stdout (after it died): every line it printed is then read. */
    void awaitEnd(Duration timeout) {
      drain();
      long deadline = System.nanoTime() + timeout.toNanos();
      while (!ended) {
        String l = poll(deadline, "the end of stdout");
        if (l == null) {
          fail(name + ": stdout did not end within " + timeout.toSeconds() + " s" + diagnostics());
        }
        accept(l);
      }
    }

    /** Kills the child (SIGKILL) and waits, bounded, for it to be gone. */
    void kill() {
      process.destroyForcibly();
      try {
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
          throw new AssertionError(name + ": still alive 10 s after SIGKILL");
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }

    /** The child's last stdout lines and the tail of its stderr, for failure messages. */
    String diagnostics() {
      drain();
      StringBuilder b = new StringBuilder();
      b.append("\n--- ").append(name).append(" stdout (last lines) ---\n");
      seen.subList(Math.max(0, seen.size() - 10), seen.size()).forEach(l -> b.append(l).append('\n'));
      b.append("--- ").append(name).append(" stderr (").append(stderr).append(", last lines) ---\n");
      try {
        List<String> err = Files.readAllLines(stderr.toPath(), StandardCharsets.UTF_8);
        err.subList(Math.max(0, err.size() - 30), err.size()).forEach(l -> b.append(l).append('\n'));
      } catch (IOException | UncheckedIOException e) {
        b.append("(unreadable: ").append(e).append(")\n");
      }
      return b.toString();
    }

    private String poll(long deadline, String what) {
      long left = deadline - System.nanoTime();
      try {
        return left > 0 ? queue.poll(left, TimeUnit.NANOSECONDS) : null;
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError(name + ": interrupted while awaiting " + what, e);
      }
    }

    private String exitCode() {
      try {
        return process.waitFor(5, TimeUnit.SECONDS) ? "exit code " + process.exitValue() : "still running";
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return "unknown exit code";
      }
    }

    private void drain() {
      for (String l = queue.poll(); l != null; l = queue.poll()) {
        accept(l);
      }
    }

    /** Records a line; false for the end of stdout. */
    private boolean accept(String l) {
      if (l == EOF) {
        ended = true;
        return false;
      }
      seen.add(l);
      return true;
    }
  }
}
