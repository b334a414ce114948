package dev.entanglement.store;

/**
 * A write that retrying cannot make succeed: the database refuses the batch itself (its schema was
 * changed by hand, a constraint or a permission forbids it), not the connection, or the store may
 * no longer write the database (another node took it over). A {@link
 * StateStore} signals it so that the node stops writing instead of retrying the same batch ahead of
 * every later one forever; see {@link StateStore} for what the node does then.
 */
public final class PermanentStoreException extends RuntimeException {
  public PermanentStoreException(String message) {
    super(message);
  }

  public PermanentStoreException(String message, Throwable cause) {
    super(message, cause);
  }
}
