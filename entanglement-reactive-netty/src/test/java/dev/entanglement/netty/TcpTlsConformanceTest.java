package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;

/** TCP with mutual TLS. */
@org.junit.jupiter.api.extension.ExtendWith(LeakDetection.class)
class TcpTlsConformanceTest implements TransportConformance {
  private static final TestPki PKI = new TestPki("conformance-ca");

  @Override
  public Harness harness(EntanglementNode a, EntanglementNode b) {
    return TcpConformanceTest.tcpHarness(a, b, PKI.issue("a"), PKI.issue("b"), PKI.issue("raw"));
  }
}
