package dev.entanglement.netty;

import reactor.blockhound.BlockHound;
import reactor.blockhound.integration.BlockHoundIntegration;

/**
 * Lets event-loop threads log in tests: Logback's console appender takes a lock around each write,
 * and when two threads log at once one of them parks, which BlockHound would report as blocking.
 * (slf4j-simple, used before, synchronizes on the stream instead, which BlockHound allows.)
 */
public final class LogbackBlockHound implements BlockHoundIntegration {
  @Override
  public void applyTo(BlockHound.Builder builder) {
    builder.allowBlockingCallsInside("ch.qos.logback.core.OutputStreamAppender", "subAppend");
  }
}
