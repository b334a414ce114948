package dev.entanglement.protocol;

/** A frame body that cannot be decoded: unknown type, malformed CBOR, or missing fields. */
public final class ProtocolException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public ProtocolException(String message, Throwable cause) {
    super(message, cause);
  }

  public ProtocolException(String message) {
    super(message);
  }
}
