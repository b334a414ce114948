package dev.entanglement;

import java.util.Objects;

/**
 * The authenticated identity of a neighbour, as established by its transport: the certificate
 * fingerprint for TLS ({@code ni:///sha-256;…}), the peer credentials for Unix sockets, the result of
 * the upgrade hook for WebSocket, or the node id for the in-JVM transport. Policy decisions are keyed
 * by it.
 */
public record PeerId(String value) {
  public PeerId {
    Objects.requireNonNull(value, "value");
  }

  public static PeerId of(String value) {
    return new PeerId(value);
  }

  @Override
  public String toString() {
    return value;
  }
}
