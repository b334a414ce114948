package dev.entanglement;

import static dev.entanglement.TestMesh.CURSOR;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.TestMesh.Cursor;
import dev.entanglement.transport.LocalTransport;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Flooding, versioning, deletes and owners across several nodes (reference §4, §6, §7, §11). */
class ReplicationTest {

  private static Cursor cursor(EntanglementNode n, String id) {
    return n.get(CURSOR, id).map(Snapshot::value).orElse(null);
  }

  @Test
  @DisplayName("coalescing under a bandwidth limit: 1,000 updates of one object send few frames, the last one wins")
  void coalescingUnderBandwidthLimit() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode a = mesh.node("a");
      EntanglementNode b = mesh.node("b");
      // About 1,000 bytes/s: roughly ten 100-byte frames per second.
      LocalTransport.Connection c =
          mesh.connect("a", "b", LocalTransport.builder().scheduler(mesh.clock).bandwidth(1_000).build());
      mesh.advance(Duration.ofSeconds(1)); // handshake
      long framesBefore = a.stats().framesSent();
      for (int i = 0; i < 1_000; i++) {
        a.publish(new Cursor("c", i, i)).block();
        mesh.advance(Duration.ofNanos(250_000)); // 1,000 updates over 0.25 s
      }
      mesh.advance(Duration.ofSeconds(2));
      long frames = a.stats().framesSent() - framesBefore;
      // A few states and watermarks; plus, at most once a second, a probe (PING) to b and a PONG
      // to b's probe.
      assertTrue(frames >= 2 && frames <= 12, "frames sent: " + frames);
      assertEquals(new Cursor("c", 999, 999), cursor(b, "c"));
      assertTrue(c.bytesAtoB() <= 1_000 * 3.25 + 200, "bytes " + c.bytesAtoB());
    }
  }

  @Test
  @DisplayName("gateway flooding: client - server - manager, every node holds every object with the owner's version")
  void gatewayFlooding() {
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("client", "server", "manager")) {
        mesh.node(n);
      }
      mesh.connect("client", "server");
      mesh.connect("server", "manager");
      for (String n : List.of("client", "server", "manager")) {
        mesh.get(n).publish(new Cursor(n, 1, 1)).block();
      }
      for (String holder : List.of("client", "server", "manager")) {
        for (String obj : List.of("client", "server", "manager")) {
          Snapshot<Cursor> s = mesh.get(holder).get(CURSOR, obj).orElseThrow();
          assertEquals(OwnerId.of("owner-" + obj), s.owner());
          assertEquals(mesh.get(obj).get(CURSOR, obj).orElseThrow().version(), s.version());
        }
      }
    }
  }

  @Test
  @DisplayName("delete while connected: each node deletes its own object; all are gone everywhere")
  void deleteConnected() {
    try (TestMesh mesh = line("client", "server", "manager")) {
      for (String n : List.of("client", "server", "manager")) {
        mesh.get(n).publish(new Cursor(n, 1, 1)).block();
      }
      for (String n : List.of("client", "server", "manager")) {
        assertTrue(mesh.get(n).delete(CURSOR, n).block().isCommitted());
      }
      for (String holder : List.of("client", "server", "manager")) {
        for (String obj : List.of("client", "server", "manager")) {
          assertTrue(mesh.get(holder).get(CURSOR, obj).orElseThrow().deleted(), holder + " " + obj);
        }
      }
    }
  }

  @Test
  @DisplayName("delete while disconnected: tombstones reach nodes two hops away after reconnect")
  void deleteDisconnected() {
    try (TestMesh mesh = line("client", "server", "manager")) {
      for (String n : List.of("client", "server", "manager")) {
        mesh.get(n).publish(new Cursor(n, 1, 1)).block();
      }
      mesh.disconnect("client", "server");
      mesh.disconnect("server", "manager");
      for (String n : List.of("client", "server", "manager")) {
        assertTrue(mesh.get(n).delete(CURSOR, n).block().isCommitted());
      }
      mesh.connect("client", "server");
      mesh.connect("server", "manager");
      for (String holder : List.of("client", "server", "manager")) {
        for (String obj : List.of("client", "server", "manager")) {
          assertTrue(mesh.get(holder).get(CURSOR, obj).orElseThrow().deleted(), holder + " " + obj);
        }
      }
    }
  }

  @Test
  @DisplayName("a tombstone carries the owner's version at every hop, also to a node that was away when it was made")
  void tombstonesCarryTheOwnersVersionAtEveryHop() {
    try (TestMesh mesh = line("a", "b", "c", "d")) {
      mesh.get("a").publish(new Cursor("x", 1, 1)).block();
      for (int i = 0; i < 4; i++) {
        mesh.get("a").publish(new Cursor("y", i, i)).block();
      }
      mesh.settle();
      mesh.disconnect("c", "d");
      assertTrue(mesh.get("a").delete(CURSOR, "x").block().isCommitted());
      mesh.get("a").publish(new Cursor("y", 9, 9)).block();
      mesh.connect("c", "d");
      mesh.settle();
      Version deletedAt = mesh.get("a").get(CURSOR, "x").orElseThrow().version();
      for (String n : List.of("b", "c", "d")) {
        Snapshot<Cursor> s = mesh.get(n).get(CURSOR, "x").orElseThrow();
        assertTrue(s.deleted(), n);
        assertEquals(deletedAt, s.version(), n);
      }
    }
  }

  @Test
  @DisplayName("owner removal: a removed owner's objects disappear everywhere, also after a reconnect")
  void ownerRemoval() {
    try (TestMesh mesh = line("client", "server", "manager")) {
      EntanglementNode client = mesh.get("client");
      OwnerId o = OwnerId.of("extra");
      client.addOwner(o).block();
      client.publish(CURSOR, o, new Cursor("x", 1, 1)).block();
      client.publish(new Cursor("keep", 1, 1)).block();
      assertEquals(o, mesh.get("manager").get(CURSOR, "x").orElseThrow().owner());
      mesh.disconnect("client", "server");
      client.removeOwner(o).block();
      assertTrue(client.get(CURSOR, "x").isEmpty());
      assertTrue(mesh.get("manager").get(CURSOR, "x").isPresent(), "not yet told");
      mesh.connect("client", "server");
      assertTrue(mesh.get("server").get(CURSOR, "x").isEmpty());
      assertTrue(mesh.get("manager").get(CURSOR, "x").isEmpty());
      assertTrue(mesh.get("manager").get(CURSOR, "keep").isPresent());
    }
  }

  @Test
  @DisplayName("serial isolation: proposals and remote deletes never advance a non-owner's serial")
  void serialIsolation() {
    try (TestMesh mesh = line("client", "server", "manager")) {
      EntanglementNode client = mesh.get("client");
      EntanglementNode manager = mesh.get("manager");
      for (int round = 0; round < 5; round++) {
        String id = "obj" + round;
        client.publish(new Cursor(id, 0, 0)).block();
        assertTrue(manager.propose(CURSOR, id, new Cursor(id, 5, 5)).block().isCommitted());
        assertTrue(manager.delete(CURSOR, id).block().isCommitted());
        assertTrue(client.get(CURSOR, id).orElseThrow().deleted());
      }
      // The manager committed nothing of its own, so its first own commit has serial 1.
      assertEquals(1, manager.publish(new Cursor("m", 0, 0)).block().version().serial());
      // The client's serials advanced by 3 per round: create, proposal, delete.
      assertEquals(16, client.publish(new Cursor("c", 0, 0)).block().version().serial());
    }
  }

  @Test
  @DisplayName("triangle: every node holds one copy of every object, with no ownership errors")
  void triangle() {
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("server", "server2", "client")) {
        mesh.node(n);
      }
      mesh.connect("server2", "server");
      mesh.connect("client", "server");
      mesh.connect("client", "server2");
      for (String n : List.of("server", "server2", "client")) {
        mesh.get(n).publish(new Cursor(n, 1, 2)).block();
        mesh.get(n).publish(new Cursor(n, 3, 4)).block();
      }
      for (String holder : List.of("server", "server2", "client")) {
        for (String obj : List.of("server", "server2", "client")) {
          assertEquals(new Cursor(obj, 3, 4), cursor(mesh.get(holder), obj));
        }
        assertEquals(0, mesh.get(holder).stats().errorsReceived(), holder);
      }
    }
  }

  @Test
  @DisplayName("delete flooding stops in a cycle: after a delete the mesh goes quiet")
  void deleteFloodingStops() {
    try (TestMesh mesh = new TestMesh()) {
      for (String n : List.of("server", "server2", "client")) {
        mesh.node(n);
      }
      mesh.connect("server2", "server");
      mesh.connect("client", "server");
      mesh.connect("client", "server2");
      mesh.get("server").publish(new Cursor("x", 1, 1)).block();
      assertTrue(mesh.get("server").delete(CURSOR, "x").block().isCommitted());
      mesh.advance(Duration.ofSeconds(5)); // watermarks settle
      long sent = totalFramesSent(mesh);
      mesh.advance(Duration.ofSeconds(8)); // less than a keepalive interval
      assertEquals(sent, totalFramesSent(mesh), "frames kept flowing after the delete");
      // Each of the two other nodes received the tombstone at most twice (once per path); the rest
      // is the handshake, catch-up watermarks and routes of three links, and a probe (PING, PONG)
      // each way on each link once the queues drained.
      assertTrue(sent < 72, "frames: " + sent);
      for (String n : List.of("server2", "client")) {
        assertTrue(mesh.get(n).get(CURSOR, "x").orElseThrow().deleted());
      }
    }
  }

  @ParameterizedTest(name = "seed {0}")
  @ValueSource(longs = {1, 2, 3, 42, 1234})
  @DisplayName("a cyclic mesh converges to every owner's latest state and versions never regress")
  void cyclicMeshConverges(long seed) {
    Random rnd = new Random(seed);
    try (TestMesh mesh = new TestMesh()) {
      int n = 6;
      for (int i = 0; i < n; i++) {
        mesh.node("n" + i);
      }
      for (int i = 0; i < n; i++) {
        mesh.connect("n" + i, "n" + ((i + 1) % n)); // ring
      }
      mesh.connect("n0", "n3"); // chords make more cycles
      mesh.connect("n1", "n4");
      List<Version> seen = new ArrayList<>();
      List<String> regressions = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        mesh.get("n" + i)
            .watchAll(CURSOR)
            .subscribe(
                s -> {
                  synchronized (seen) {
                    seen.add(s.version());
                  }
                });
      }
      // Watch one key everywhere to check monotonic versions per subscriber.
      for (int i = 0; i < n; i++) {
        Version[] last = {null};
        String who = "n" + i;
        mesh.get(who)
            .watch(CURSOR, "k0")
            .subscribe(
                s -> {
                  if (last[0] != null && !s.version().isNewerThan(last[0])) {
                    regressions.add(who + ": " + last[0] + " then " + s.version());
                  }
                  last[0] = s.version();
                });
      }
      for (int op = 0; op < 300; op++) {
        int owner = rnd.nextInt(n);
        // Each node owns its own keys k<owner>-*; key k0 belongs to n0.
        String key = owner == 0 && rnd.nextBoolean() ? "k0" : "k" + owner + "-" + rnd.nextInt(5);
        mesh.get("n" + owner).publish(new Cursor(key, op, rnd.nextDouble())).block();
      }
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
          for (int k = 0; k < 5; k++) {
            String key = "k" + j + "-" + k;
            assertEquals(
                mesh.get("n" + j).get(CURSOR, key).map(Snapshot::version),
                mesh.get("n" + i).get(CURSOR, key).map(Snapshot::version),
                "n" + i + " " + key);
          }
        }
        assertEquals(0, mesh.get("n" + i).stats().errorsReceived());
      }
      assertTrue(regressions.isEmpty(), regressions.toString());
    }
  }

  @Test
  @DisplayName("each version is encoded once whatever the number of destinations; relays reuse the received frame")
  void encodeOncePerVersion() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode hub = mesh.node("hub");
      for (String n : List.of("s1", "s2", "s3")) {
        mesh.node(n);
        mesh.connect("hub", n);
      }
      mesh.node("leaf");
      mesh.connect("s1", "leaf");
      long before = hub.stats().statesEncoded();
      hub.publish(new Cursor("c", 1, 1)).block();
      assertEquals(before + 1, hub.stats().statesEncoded());
      assertEquals(new Cursor("c", 1, 1), cursor(mesh.get("leaf"), "c"));
      assertEquals(0, mesh.get("s1").stats().statesEncoded(), "the relay re-encoded");
    }
  }

  @Test
  @DisplayName("a version still queued for a slow link keeps its frame when a new neighbour's catch-up sends it: encoded once")
  void encodeOncePerVersionWhileACatchUpSendsItToAnotherLink() {
    try (TestMesh mesh = new TestMesh()) {
      EntanglementNode owner = mesh.node("owner");
      mesh.node("slow");
      mesh.node("late");
      // About one 100-byte frame every 2 s: a new version stays queued for "slow" meanwhile.
      mesh.connect("owner", "slow", LocalTransport.builder().scheduler(mesh.clock).bandwidth(50).build());
      mesh.advance(Duration.ofSeconds(30)); // the handshake through the slow link
      owner.publish(new Cursor("c", 1, 1)).block();
      mesh.advance(Duration.ofSeconds(30));
      assertEquals(new Cursor("c", 1, 1), cursor(mesh.get("slow"), "c"));
      long before = owner.stats().statesEncoded();
      owner.publish(new Cursor("c", 2, 2)).block(); // queued for "slow", frame kept for it
      // A new neighbour's catch-up sends the same version at once, over a fast link.
      mesh.connect("owner", "late");
      assertEquals(new Cursor("c", 2, 2), cursor(mesh.get("late"), "c"));
      mesh.advance(Duration.ofSeconds(30));
      assertEquals(new Cursor("c", 2, 2), cursor(mesh.get("slow"), "c"));
      assertEquals(before + 1, owner.stats().statesEncoded(), "version 2 was encoded again");
    }
  }

  @Test
  @DisplayName("reconnect: an object updated while disconnected arrives in its latest state")
  void reconnectCatchesUp() {
    try (TestMesh mesh = line("a", "b")) {
      mesh.get("a").publish(new Cursor("c", 1, 1)).block();
      mesh.disconnect("a", "b");
      mesh.get("a").publish(new Cursor("c", 2, 2)).block();
      mesh.get("a").publish(new Cursor("d", 3, 3)).block();
      assertEquals(new Cursor("c", 1, 1), cursor(mesh.get("b"), "c"));
      mesh.connect("a", "b");
      assertEquals(new Cursor("c", 2, 2), cursor(mesh.get("b"), "c"));
      assertEquals(new Cursor("d", 3, 3), cursor(mesh.get("b"), "d"));
    }
  }

  @Test
  @DisplayName("a restarted owner with a new epoch replaces what receivers hold, even with lower serials")
  void newEpochWins() {
    try (TestMesh mesh = new TestMesh()) {
      mesh.node("a");
      mesh.node("b");
      mesh.connect("a", "b");
      for (int i = 0; i < 5; i++) {
        mesh.get("a").publish(new Cursor("c", i, i)).block();
      }
      mesh.disconnect("a", "b");
      mesh.nodes.remove("a").close().block();
      EntanglementNode restarted = mesh.node("a", b -> b.epoch(2));
      restarted.publish(new Cursor("c", 100, 100)).block();
      mesh.connect("a", "b");
      Snapshot<Cursor> s = mesh.get("b").get(CURSOR, "c").orElseThrow();
      assertEquals(new Version(2, 1), s.version());
      assertEquals(new Cursor("c", 100, 100), s.value());
    }
  }

  @Test
  @DisplayName("a node never accepts a state that claims one of its own owners")
  void ownStateFromNeighbourIsRejected() {
    try (TestMesh mesh = line("a", "b")) {
      EntanglementNode b = mesh.get("b");
      b.publish(new Cursor("mine", 1, 1)).block();
      // b cannot publish an object that a's owner owns.
      mesh.get("a").publish(new Cursor("theirs", 1, 1)).block();
      EntanglementException e =
          org.junit.jupiter.api.Assertions.assertThrows(
              EntanglementException.class, () -> b.publish(new Cursor("theirs", 2, 2)).block());
      assertEquals(ErrorCode.BAD_OWNER, e.code());
      assertFalse(mesh.get("a").get(CURSOR, "theirs").orElseThrow().value().x() == 2);
    }
  }

  static TestMesh line(String... ids) {
    TestMesh mesh = new TestMesh();
    for (String id : ids) {
      mesh.node(id);
    }
    for (int i = 0; i + 1 < ids.length; i++) {
      mesh.connect(ids[i], ids[i + 1]);
    }
    return mesh;
  }

  private static long totalFramesSent(TestMesh mesh) {
    return mesh.nodes.values().stream().mapToLong(n -> n.stats().framesSent()).sum();
  }
}
