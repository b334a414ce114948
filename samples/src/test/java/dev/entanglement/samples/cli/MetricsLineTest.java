package dev.entanglement.samples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.entanglement.NodeStats;
import dev.entanglement.PeerId;
import dev.entanglement.PeerStats;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;

class MetricsLineTest {

  @Test
  @DisplayName("the --metrics line shows node totals, then each peer's staleness, conflation ratio, queue and traffic")
  void format() {
    PeerStats alice = new PeerStats(PeerId.of("ws:alice"), 100, 25_600, 30, 1_126, 320, 220,
        Duration.ofMillis(12), Duration.ofMillis(40), 1, 0, 0, 0, Duration.ZERO, 0);
    NodeStats stats = new NodeStats(120, 31_949, 40, 90, 400, 220, 0, 0, 1, 0, 0, 0, 0, 0, List.of(alice));
    assertEquals(
        "metrics: sent 120 frames 31.2 KB, received 40 frames, queued 1, requests 0, decisions 0, transitions 0"
            + " | ws:alice staleness p50 12 ms p99 40 ms, conflation 3.20, queue 1, sent 100 frames 25.0 KB,"
            + " received 30 frames 1.1 KB",
        MetricsLine.format(stats));
  }

  @Test
  @DisplayName("no peers: node totals only; small sizes in bytes, large in MB")
  void noPeers() {
    NodeStats stats = new NodeStats(3, 900, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, List.of());
    assertEquals("metrics: sent 3 frames 900 B, received 2 frames, queued 0, requests 0, decisions 0, transitions 0",
        MetricsLine.format(stats));
  }
}
