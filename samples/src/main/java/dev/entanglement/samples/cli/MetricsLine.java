package dev.entanglement.samples.cli;

import dev.entanglement.NodeStats;
import dev.entanglement.PeerStats;
import java.util.Locale;

/** The one-line summary of a node's statistics that {@code --metrics} logs. */
final class MetricsLine {
  private MetricsLine() {}

  /**
   * For example {@code metrics: sent 120 frames 31.2 KB, received 40 frames, queued 1, requests 0,
   * decisions 0, transitions 0 | ws:alice staleness p50 12 ms p99 40 ms, conflation 3.20, queue 1,
   * sent 100 frames 25.0 KB, received 30 frames 1.1 KB}.
   */
  static String format(NodeStats s) {
    StringBuilder b = new StringBuilder(160);
    b.append(String.format(Locale.ROOT,
        "metrics: sent %d frames %s, received %d frames, queued %d, requests %d, decisions %d, transitions %d",
        s.framesSent(), size(s.bytesSent()), s.framesReceived(), s.queuedEntries(), s.pendingRequests(),
        s.pendingDecisions(), s.activeTransitions()));
    for (PeerStats p : s.peers()) {
      b.append(String.format(Locale.ROOT,
          " | %s staleness p50 %d ms p99 %d ms, conflation %.2f, queue %d, sent %d frames %s, received %d frames %s",
          p.peer().value(), p.stalenessP50().toMillis(), p.stalenessP99().toMillis(), p.conflationRatio(),
          p.queueDepth(), p.framesSent(), size(p.bytesSent()), p.framesReceived(), size(p.bytesReceived())));
    }
    return b.toString();
  }

  private static String size(long bytes) {
    if (bytes < 1024) {
      return bytes + " B";
    }
    if (bytes < 1024 * 1024) {
      return String.format(Locale.ROOT, "%.1f KB", bytes / 1024.0);
    }
    return String.format(Locale.ROOT, "%.1f MB", bytes / (1024.0 * 1024));
  }
}
