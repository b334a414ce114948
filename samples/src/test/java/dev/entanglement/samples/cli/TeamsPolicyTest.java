package dev.entanglement.samples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.ObjectKey;
import dev.entanglement.Operation;
import dev.entanglement.OwnerId;
import dev.entanglement.Outcome;
import dev.entanglement.PeerId;
import dev.entanglement.Policy;
import dev.entanglement.Snapshot;
import dev.entanglement.Version;
import dev.entanglement.netty.Fingerprints;
import dev.entanglement.samples.cli.DemoTypes.Cursor;
import dev.entanglement.samples.cli.DemoTypes.Shape;
import dev.entanglement.samples.cli.TeamsPolicy.Team;
import dev.entanglement.transport.LocalTransport;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.jspecify.annotations.Nullable;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;

class TeamsPolicyTest {
  static final Duration WAIT = Duration.ofSeconds(10);
  static final OwnerId HUB_OWNER = OwnerId.of("hub-owner");
  static final PeerId RED = PeerId.of("ws:red");
  static final PeerId BLUE = PeerId.of("ws:blue");
  static final PeerId STAFF = PeerId.of("ws:staff");
  static final PeerId NODE = Fingerprints.ofDer("another node".getBytes(StandardCharsets.UTF_8));
  static final PeerId STRANGER = PeerId.of("ws:stranger");

  private final List<Disposable> cleanup = new ArrayList<>();
  private final Map<ObjectKey, Snapshot<?>> held = new HashMap<>();

  @AfterEach
  void close() {
    cleanup.forEach(Disposable::dispose);
  }

  // ------------------------------------------------------------------ the rules, one by one

  private TeamsPolicy rules() {
    TeamsPolicy p = new TeamsPolicy((type, key) -> Optional.ofNullable(held.get(type.key(key))), Set.of(HUB_OWNER));
    p.assign(RED, Team.RED, Set.of(ownerOf(RED)));
    p.assign(BLUE, Team.BLUE, Set.of(ownerOf(BLUE)));
    p.assign(STAFF, Team.STAFF, Set.of(ownerOf(STAFF)));
    return p;
  }

  /** The owner of a client's own objects in these tests. */
  private static OwnerId ownerOf(PeerId peer) {
    return OwnerId.of("owner-" + peer.value());
  }

  private static Snapshot<Cursor> cursor(String key, @Nullable String team) {
    return new Snapshot<>(new ObjectKey("Cursor", key), new Cursor(key, "o", team, 1.0, 2.0, null, null),
        OwnerId.of("o"), new Version(1, 1), false, 0);
  }

  private static Snapshot<Cursor> tombstone(String key) {
    return new Snapshot<>(new ObjectKey("Cursor", key), null, OwnerId.of("o"), new Version(1, 2), true, 0);
  }

  @Test
  @DisplayName("send: red and blue get their own team's and staff objects; staff and nodes get everything; strangers nothing")
  void sendRules() {
    TeamsPolicy p = rules();
    record Case(PeerId peer, @Nullable String objectTeam, boolean sent) {}
    List<Case> cases = List.of(
        new Case(RED, "red", true), new Case(RED, "blue", false), new Case(RED, "staff", true), new Case(RED, null, false),
        new Case(BLUE, "blue", true), new Case(BLUE, "red", false), new Case(BLUE, "staff", true), new Case(BLUE, "Blue", false),
        new Case(STAFF, "red", true), new Case(STAFF, "blue", true), new Case(STAFF, null, true),
        new Case(NODE, "red", true), new Case(NODE, "blue", true), new Case(NODE, null, true),
        new Case(STRANGER, "red", false), new Case(STRANGER, "staff", false));
    for (Case c : cases) {
      assertEquals(c.sent(), p.shouldSend(c.peer(), cursor("k", c.objectTeam())), c.toString());
    }
    assertFalse(p.shouldSend(RED, tombstone("k")), "a deletion reaches red as a withdrawal");
    assertTrue(p.shouldSend(STAFF, tombstone("k")));
    assertTrue(p.shouldSend(NODE, tombstone("k")));
  }

  @Test
  @DisplayName("receive: a state is accepted only with the sender's team; staff and nodes write anything")
  void acceptRules() {
    TeamsPolicy p = rules();
    for (Operation op : List.of(Operation.SYNC, Operation.PROPOSE, Operation.CREATE)) {
      assertTrue(p.shouldListenConstructed(RED, op, cursor("k", "red")), op.name());
      assertFalse(p.shouldListenConstructed(RED, op, cursor("k", "blue")), op.name());
      assertFalse(p.shouldListenConstructed(RED, op, cursor("k", "staff")), op.name());
      assertFalse(p.shouldListenConstructed(RED, op, cursor("k", null)), op.name());
      assertTrue(p.shouldListenConstructed(BLUE, op, cursor("k", "blue")), op.name());
      assertTrue(p.shouldListenConstructed(STAFF, op, cursor("k", "blue")), op.name());
      assertTrue(p.shouldListenConstructed(NODE, op, cursor("k", null)), op.name());
      assertFalse(p.shouldListenConstructed(STRANGER, op, cursor("k", "red")), op.name());
    }
    assertTrue(p.shouldListenConstructed(RED, Operation.SYNC, tombstone("k")), "an owner deletes its own object");
    assertFalse(p.shouldListenConstructed(STRANGER, Operation.SYNC, tombstone("k")));
  }

  @Test
  @DisplayName("requests: proposals, deletes and transitions only about held objects of the peer's team; creates only for local owners")
  void requestRules() {
    TeamsPolicy p = rules();
    held.put(new ObjectKey("Cursor", "r"), cursor("r", "red"));
    held.put(new ObjectKey("Cursor", "b"), cursor("b", "blue"));
    held.put(new ObjectKey("Cursor", "gone"), tombstone("gone"));
    OwnerId remote = OwnerId.of("elsewhere");
    for (Operation op : List.of(Operation.PROPOSE, Operation.DELETE, Operation.TRANSITION)) {
      assertTrue(p.shouldListen(RED, op, DemoTypes.CURSOR, new ObjectKey("Cursor", "r"), remote), op.name());
      assertFalse(p.shouldListen(RED, op, DemoTypes.CURSOR, new ObjectKey("Cursor", "b"), remote), op.name());
      assertFalse(p.shouldListen(RED, op, DemoTypes.CURSOR, new ObjectKey("Cursor", "unknown"), remote), op.name());
      assertFalse(p.shouldListen(RED, op, DemoTypes.CURSOR, new ObjectKey("Cursor", "gone"), remote), op.name());
      assertTrue(p.shouldListen(BLUE, op, DemoTypes.CURSOR, new ObjectKey("Cursor", "b"), remote), op.name());
      assertTrue(p.shouldListen(STAFF, op, DemoTypes.CURSOR, new ObjectKey("Cursor", "unknown"), remote), op.name());
      assertFalse(p.shouldListen(STRANGER, op, DemoTypes.CURSOR, new ObjectKey("Cursor", "r"), remote), op.name());
    }
    ObjectKey none = new ObjectKey("Shape", "");
    assertTrue(p.shouldListen(RED, Operation.CREATE, DemoTypes.SHAPE, none, HUB_OWNER));
    assertFalse(p.shouldListen(RED, Operation.CREATE, DemoTypes.SHAPE, none, remote), "a relay cannot check a create");
    assertTrue(p.shouldListen(NODE, Operation.CREATE, DemoTypes.SHAPE, none, remote));
    assertTrue(p.shouldListen(RED, Operation.SYNC, DemoTypes.CURSOR, new ObjectKey("Cursor", "new"), remote),
        "states are judged once decoded");
  }

  @Test
  @DisplayName("an object's team comes from a record component or a map entry named team")
  void teamOfValue() {
    assertEquals(Optional.of(Team.RED), TeamsPolicy.teamOfValue(new Cursor("c", null, "red", null, null, null, null)));
    assertEquals(Optional.of(Team.STAFF),
        TeamsPolicy.teamOfValue(new Shape("s", null, "staff", "rect", 0.0, 0.0, 1.0, 1.0, null, true)));
    assertEquals(Optional.of(Team.BLUE), TeamsPolicy.teamOfValue(Map.of("id", "m", "team", "blue")));
    assertEquals(Optional.empty(), TeamsPolicy.teamOfValue(Map.of("id", "m")));
    assertEquals(Optional.empty(), TeamsPolicy.teamOfValue(new Cursor("c", null, "green", null, null, null, null)));
    record NoTeam(String id) {}
    assertEquals(Optional.empty(), TeamsPolicy.teamOfValue(new NoTeam("x")));
    assertEquals(Optional.empty(), TeamsPolicy.teamOfValue("red"));
    assertEquals(Optional.empty(), TeamsPolicy.teamOfValue(null));
  }

  @Test
  @DisplayName("assign reports a change of team; nodes are staff without assignment; forget removes the team")
  void assignments() {
    TeamsPolicy p = rules();
    assertFalse(p.assign(RED, Team.RED, Set.of(ownerOf(RED))), "same team and owners: nothing to refresh");
    assertTrue(p.assign(RED, Team.RED, Set.of(ownerOf(RED), ownerOf(BLUE))), "other owners");
    assertTrue(p.assign(RED, Team.BLUE, Set.of(ownerOf(RED))));
    assertEquals(Optional.of(Team.BLUE), p.teamOf(RED));
    assertEquals(Optional.of(Team.STAFF), p.teamOf(NODE));
    assertTrue(TeamsPolicy.isNode(NODE));
    assertFalse(TeamsPolicy.isNode(RED));
    p.forget(RED);
    assertEquals(Optional.empty(), p.teamOf(RED));
  }

  @Test
  @DisplayName("routes: a red, blue or staff peer speaks only for its own owners; a node for every owner; a stranger for none")
  void routeRules() {
    TeamsPolicy p = rules();
    for (PeerId peer : List.of(RED, BLUE, STAFF)) {
      assertTrue(p.shouldAcceptRoute(peer, ownerOf(peer)), peer + " speaks for its owner");
      assertFalse(p.shouldAcceptRoute(peer, HUB_OWNER), peer + " does not speak for the hub");
    }
    assertFalse(p.shouldAcceptRoute(RED, ownerOf(BLUE)), "red cannot pose as blue's owner");
    assertTrue(p.shouldAcceptRoute(NODE, ownerOf(BLUE)) && p.shouldAcceptRoute(NODE, OwnerId.of("any")));
    assertFalse(p.shouldAcceptRoute(STRANGER, ownerOf(STRANGER)));
    p.forget(RED);
    assertFalse(p.shouldAcceptRoute(RED, ownerOf(RED)), "forgotten: speaks for nobody");
  }

  // ------------------------------------------------------------------ the rules on a running hub

  /** A hub guarded by the policy, and plain clients attached to it in-JVM under the given identities. */
  private final class Hub {
    final AtomicReference<EntanglementNode> self = new AtomicReference<>();
    final TeamsPolicy teams = new TeamsPolicy((type, key) -> self.get().get(type, key), Set.of(HUB_OWNER));
    final EntanglementNode node = EntanglementNode.builder().id("hub").owner(HUB_OWNER)
        .registry(DemoTypes.registry(teams)).build();

    Hub() {
      self.set(node);
      cleanup.add(() -> node.close().block(WAIT));
    }

    /** Puts {@code peer} in {@code team}, speaking for its owner in these tests. */
    void assign(PeerId peer, Team team) {
      teams.assign(peer, team, Set.of(ownerOf(peer)));
    }

    EntanglementNode client(PeerId identity) {
      return client(identity, ownerOf(identity));
    }

    EntanglementNode client(PeerId identity, OwnerId owner) {
      EntanglementNode c = EntanglementNode.builder().id(identity.value()).owner(owner)
          .registry(DemoTypes.registry(Policy.ALLOW_ALL)).build();
      cleanup.add(() -> c.close().block(WAIT));
      LocalTransport.Connection link = LocalTransport.create().connect(PeerId.of("hub"), identity);
      cleanup.add(node.attach(link.a()).subscribe());
      cleanup.add(c.attach(link.b()).subscribe());
      return c;
    }

    void publish(String key, @Nullable String team) {
      node.publish(DemoTypes.CURSOR, new Cursor(key, "hub", team, 1.0, 1.0, null, null)).block(WAIT);
    }
  }

  private static Snapshot<Cursor> await(EntanglementNode n, String key) {
    return n.watch(DemoTypes.CURSOR, key).filter(s -> !s.deleted()).blockFirst(WAIT);
  }

  private static CompletableFuture<Snapshot<Cursor>> withdrawal(EntanglementNode n, String key) {
    return n.watch(DemoTypes.CURSOR, key).filter(Snapshot::deleted).next().toFuture();
  }

  private static boolean holds(EntanglementNode n, String key) {
    return n.get(DemoTypes.CURSOR, key).filter(s -> !s.deleted()).isPresent();
  }

  @Test
  @DisplayName("over links: red never receives blue objects and vice versa; staff and nodes receive all")
  void isolationOverLinks() {
    Hub hub = new Hub();
    hub.assign(RED, Team.RED);
    hub.assign(BLUE, Team.BLUE);
    hub.assign(STAFF, Team.STAFF);
    Map<PeerId, EntanglementNode> clients = new HashMap<>();
    for (PeerId id : List.of(RED, BLUE, STAFF, NODE, STRANGER)) {
      clients.put(id, hub.client(id));
    }
    // Every link is up once each client with a team has the first staff object.
    hub.publish("ready", "staff");
    for (PeerId id : List.of(RED, BLUE, STAFF, NODE)) {
      await(clients.get(id), "ready");
    }
    hub.publish("r", "red");
    hub.publish("b", "blue");
    hub.publish("s", "staff");
    hub.publish("none", null);
    hub.publish("marker", "staff");
    // The hub sends in order within a priority: whatever it would send came before the marker.
    for (PeerId id : List.of(RED, BLUE, STAFF, NODE)) {
      await(clients.get(id), "marker");
    }
    EntanglementNode red = clients.get(RED);
    EntanglementNode blue = clients.get(BLUE);
    assertTrue(holds(red, "r") && holds(red, "s"));
    assertFalse(holds(red, "b") || holds(red, "none"), "red sees no blue and no team-less object");
    assertTrue(holds(blue, "b") && holds(blue, "s"));
    assertFalse(holds(blue, "r") || holds(blue, "none"), "blue sees no red and no team-less object");
    for (PeerId all : List.of(STAFF, NODE)) {
      for (String key : List.of("r", "b", "s", "none")) {
        assertTrue(holds(clients.get(all), key), all + " holds " + key);
      }
    }
    assertFalse(holds(clients.get(STRANGER), "marker"), "a peer without a team receives nothing");
  }

  @Test
  @DisplayName("over links: the hub accepts a red peer's states only with team red; staff writes any team")
  void writesOverLinks() {
    Hub hub = new Hub();
    hub.assign(RED, Team.RED);
    hub.assign(STAFF, Team.STAFF);
    EntanglementNode red = hub.client(RED);
    EntanglementNode staff = hub.client(STAFF);
    hub.publish("ready", "staff");
    await(red, "ready");
    await(staff, "ready");
    red.publish(DemoTypes.CURSOR, new Cursor("red-as-blue", "red", "blue", 0.0, 0.0, null, null)).block(WAIT);
    red.publish(DemoTypes.CURSOR, new Cursor("red-own", "red", "red", 0.0, 0.0, null, null)).block(WAIT);
    staff.publish(DemoTypes.CURSOR, new Cursor("staff-blue", "staff", "blue", 0.0, 0.0, null, null)).block(WAIT);
    await(hub.node, "red-own");
    await(hub.node, "staff-blue");
    // The red link delivers in order: the refused state came before the accepted one.
    assertFalse(holds(hub.node, "red-as-blue"), "a red peer cannot write a blue object");

    hub.publish("r", "red");
    hub.publish("b", "blue");
    await(red, "r");
    Outcome<Cursor> moved = red.propose(DemoTypes.CURSOR, "r", Map.of("x", 5.0)).block(WAIT);
    assertInstanceOf(Outcome.Committed.class, moved, "red moves a red object");
    Outcome<Cursor> recolored = red.propose(DemoTypes.CURSOR, "r", Map.of("team", "blue")).block(WAIT);
    Outcome.Rejected<Cursor> refused = assertInstanceOf(Outcome.Rejected.class, recolored, "red cannot make it blue");
    assertEquals(ErrorCode.UNAUTHORIZED, refused.code());
    assertEquals(Optional.of(Team.RED), TeamsPolicy.teamOfValue(hub.node.get(DemoTypes.CURSOR, "r").orElseThrow().value()));
    await(staff, "b");
    assertInstanceOf(Outcome.Committed.class,
        staff.propose(DemoTypes.CURSOR, "b", Map.of("team", "red")).block(WAIT), "staff may change a team");
  }

  @Test
  @DisplayName("over links: a red peer posing as a blue peer's owner is refused, even for red objects")
  void ownerImpersonationOverLinks() {
    Hub hub = new Hub();
    hub.assign(RED, Team.RED);
    hub.assign(BLUE, Team.BLUE);
    EntanglementNode poser = hub.client(RED, ownerOf(BLUE));
    EntanglementNode blue = hub.client(BLUE);
    hub.publish("ready", "staff");
    await(poser, "ready");
    await(blue, "ready");
    poser.publish(DemoTypes.CURSOR, new Cursor("posed", "red", "red", 0.0, 0.0, null, null)).block(WAIT);
    blue.publish(DemoTypes.CURSOR, new Cursor("blue-own", "blue", "blue", 0.0, 0.0, null, null)).block(WAIT);
    await(hub.node, "blue-own");
    // The hub answers the refused state with an ERROR, after which it has decided.
    long deadline = System.nanoTime() + WAIT.toNanos();
    while (poser.stats().errorsReceived() == 0 && System.nanoTime() < deadline) {
      Thread.onSpinWait();
    }
    assertEquals(1, poser.stats().errorsReceived());
    assertFalse(holds(hub.node, "posed"), "red cannot speak for blue's owner");
    assertEquals(ownerOf(BLUE), hub.node.get(DemoTypes.CURSOR, "blue-own").orElseThrow().owner());
  }

  @Test
  @DisplayName("a peer whose team changes loses the old team's objects (withdrawn) and gets the new team's after refreshPolicy")
  void teamChangeWithdraws() throws Exception {
    Hub hub = new Hub();
    PeerId peer = PeerId.of("ws:mover");
    hub.assign(peer, Team.RED);
    EntanglementNode mover = hub.client(peer);
    hub.publish("r", "red");
    hub.publish("b", "blue");
    hub.publish("s", "staff");
    hub.publish("marker", "staff");
    await(mover, "marker");
    assertTrue(holds(mover, "r"));
    assertFalse(holds(mover, "b"));

    // Watch before the change: a withdrawn object is gone, so a later watch would see nothing.
    CompletableFuture<Snapshot<Cursor>> redWithdrawn = withdrawal(mover, "r");
    assertTrue(hub.teams.assign(peer, Team.BLUE, Set.of(ownerOf(peer))));
    hub.node.refreshPolicy().block(WAIT);
    assertTrue(redWithdrawn.get(WAIT.toSeconds(), TimeUnit.SECONDS).deleted());
    await(mover, "b");
    assertTrue(holds(mover, "s"), "staff objects stay");

    List<CompletableFuture<Snapshot<Cursor>>> all =
        List.of(withdrawal(mover, "b"), withdrawal(mover, "s"), withdrawal(mover, "marker"));
    hub.teams.forget(peer);
    hub.node.refreshPolicy().block(WAIT);
    for (CompletableFuture<Snapshot<Cursor>> w : all) {
      assertTrue(w.get(WAIT.toSeconds(), TimeUnit.SECONDS).deleted());
    }
    assertFalse(holds(mover, "b") || holds(mover, "s") || holds(mover, "marker"), "a peer without a team holds nothing");
  }
}
