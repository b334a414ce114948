package dev.entanglement.samples.cli;

import dev.entanglement.EntanglementNode;
import dev.entanglement.NodeStats;
import dev.entanglement.PeerStats;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import reactor.core.publisher.Mono;
import tools.jackson.databind.json.JsonMapper;

/**
 * What {@code /api/stats} answers: the node's counters from {@link
 * EntanglementNode#statsConsistent()} as JSON, with one entry per connected peer:
 *
 * <pre>{@code
 * {"node": "node-1a2b3c4d", "framesSent": 12, "bytesSent": 3456, "framesReceived": 7,
 *  "updatesOffered": 30, "updatesCoalesced": 18, "queuedEntries": 0, "activeTransitions": 1,
 *  "peers": [{"peer": "ws:tab-1", "framesSent": 6, "bytesSent": 1200, "framesReceived": 4,
 *             "bytesReceived": 800, "updatesProduced": 15, "updatesCoalesced": 9,
 *             "stalenessP50Ms": 0.4, "stalenessP99Ms": 480.0, "queueDepth": 0,
 *             "pendingRequests": 0, "activeTransitions": 1, "conflationRatio": 2.5}]}
 * }</pre>
 *
 * Durations are in milliseconds (fractions allowed).
 */
final class StatsJson {
  private static final JsonMapper JSON = JsonMapper.builder().build();

  private StatsJson() {}

  /** Reads the node's statistics on its engine and encodes them; never blocks. */
  static Mono<byte[]> of(EntanglementNode node) {
    return node.statsConsistent().map(stats -> JSON.writeValueAsBytes(toMap(node.id(), stats)));
  }

  static Map<String, Object> toMap(String nodeId, NodeStats stats) {
    Map<String, Object> json = new LinkedHashMap<>();
    json.put("node", nodeId);
    json.put("framesSent", stats.framesSent());
    json.put("bytesSent", stats.bytesSent());
    json.put("framesReceived", stats.framesReceived());
    json.put("updatesOffered", stats.updatesOffered());
    json.put("updatesCoalesced", stats.updatesCoalesced());
    json.put("publishesMerged", stats.publishesMerged());
    json.put("eventsDropped", stats.eventsDropped());
    json.put("queuedEntries", stats.queuedEntries());
    json.put("activeTransitions", stats.activeTransitions());
    List<Map<String, Object>> peers = stats.peers().stream().map(StatsJson::peer).toList();
    json.put("peers", peers);
    return json;
  }

  private static Map<String, Object> peer(PeerStats p) {
    Map<String, Object> json = new LinkedHashMap<>();
    json.put("peer", p.peer().value());
    json.put("framesSent", p.framesSent());
    json.put("bytesSent", p.bytesSent());
    json.put("framesReceived", p.framesReceived());
    json.put("bytesReceived", p.bytesReceived());
    json.put("updatesProduced", p.updatesProduced());
    json.put("updatesCoalesced", p.updatesCoalesced());
    json.put("stalenessP50Ms", millis(p.stalenessP50()));
    json.put("stalenessP99Ms", millis(p.stalenessP99()));
    json.put("queueDepth", p.queueDepth());
    json.put("pendingRequests", p.pendingRequests());
    json.put("activeTransitions", p.activeTransitions());
    json.put("inboundPauses", p.inboundPauses());
    json.put("inboundThrottledMs", millis(p.inboundThrottled()));
    json.put("eventsDropped", p.eventsDropped());
    json.put("conflationRatio", p.conflationRatio());
    return json;
  }

  private static double millis(Duration d) {
    return d.toNanos() / 1e6;
  }
}
