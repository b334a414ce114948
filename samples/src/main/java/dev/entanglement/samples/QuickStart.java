package dev.entanglement.samples;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.SyncType;
import dev.entanglement.transport.LocalTransport;

/** The README's example, compiled and run by {@code QuickStartTest}. */
public final class QuickStart {
  private QuickStart() {}

  // README example: begin
  record Cursor(String id, double x, double y) {}

  static final SyncType<Cursor> CURSOR = SyncType.of("Cursor", Cursor.class, Cursor::id);

  static Snapshot<Cursor> run() {
    Registry registry = Registry.builder("demo").type(CURSOR).build();
    EntanglementNode alice = EntanglementNode.builder().id("alice").registry(registry).build();
    EntanglementNode bob = EntanglementNode.builder().id("bob").registry(registry).build();
    var link = LocalTransport.create().connect(PeerId.of("alice"), PeerId.of("bob"));
    alice.attach(link.a()).subscribe();
    bob.attach(link.b()).subscribe();

    alice.publish(new Cursor("alice", 10, 20)).block();          // alice owns her cursor
    Snapshot<Cursor> seen = bob.watch(CURSOR, "alice").blockFirst(); // bob sees its latest state
    return seen;
  }
  // README example: end

  public static void main(String[] args) {
    System.out.println(run());
  }
}
