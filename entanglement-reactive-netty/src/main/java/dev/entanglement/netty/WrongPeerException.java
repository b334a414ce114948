package dev.entanglement.netty;

/** The dialed peer presented another identity than the expected one. */
public final class WrongPeerException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public WrongPeerException(String message) {
    super(message);
  }
}
