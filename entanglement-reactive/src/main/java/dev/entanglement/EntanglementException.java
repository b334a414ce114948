package dev.entanglement;

/** A failure (as opposed to a rejection): the request could not be carried out or answered. */
public final class EntanglementException extends RuntimeException {
  private static final long serialVersionUID = 1L;
  private final ErrorCode code;

  public EntanglementException(ErrorCode code, String message) {
    super(code + ": " + message);
    this.code = code;
  }

  public ErrorCode code() {
    return code;
  }
}
