package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;

/** WebSocket over TLS ({@code wss://}) with client certificates. */
@org.junit.jupiter.api.extension.ExtendWith(LeakDetection.class)
class WebSocketTlsConformanceTest implements TransportConformance {
  private static final TestPki PKI = new TestPki("ws-conformance-ca");

  @Override
  public Harness harness(EntanglementNode a, EntanglementNode b) {
    return WebSocketConformanceTest.wsHarness(a, b, PKI.issue("a"), PKI.issue("b"), PKI.issue("raw"));
  }
}
