package dev.entanglement.netty;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.AppenderBase;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;
import org.slf4j.LoggerFactory;

/**
 * Records the WARN lines that one class logs, so that a test can assert that a refusal was logged
 * with its reason. Lines are recorded from any thread; {@link #await} waits on a monitor, bounded.
 */
final class LogCapture extends AppenderBase<ILoggingEvent> implements AutoCloseable {
  private final Logger logger;
  private final List<String> lines = new CopyOnWriteArrayList<>();

  private LogCapture(String source) {
    this.logger = (Logger) LoggerFactory.getLogger(source);
    setContext(logger.getLoggerContext());
    start();
    logger.addAppender(this);
  }

  /** Starts recording the WARN (and ERROR) lines of {@code source}. */
  static LogCapture warnings(Class<?> source) {
    return new LogCapture(source.getName());
  }

  /** Starts recording the WARN (and ERROR) lines of the logger named {@code source}. */
  static LogCapture warnings(String source) {
    return new LogCapture(source);
  }

  @Override
  protected void append(ILoggingEvent e) {
    if (e.getLevel().isGreaterOrEqual(Level.WARN)) {
      synchronized (this) {
        lines.add(e.getFormattedMessage());
        notifyAll();
      }
    }
  }

  /** The first recorded line that matches, waiting up to {@code timeout} for it; null if none. */
  synchronized String await(Predicate<String> match, Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      for (String l : lines) {
        if (match.test(l)) {
          return l;
        }
      }
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        return null;
      }
      TimeUnit.NANOSECONDS.timedWait(this, left);
    }
  }

  List<String> lines() {
    return List.copyOf(lines);
  }

  @Override
  public void close() {
    logger.detachAppender(this);
    stop();
  }
}
