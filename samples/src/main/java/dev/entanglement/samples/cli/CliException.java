package dev.entanglement.samples.cli;

/**
 * A failure the user can act on, with a message that says what went wrong in one line. The command
 * line prints the message alone (with {@code --debug}, the stack trace too) and exits with status 1.
 */
final class CliException extends RuntimeException {
  CliException(String message) {
    super(message);
  }

  CliException(String message, Throwable cause) {
    super(message, cause);
  }
}
