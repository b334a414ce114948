package dev.entanglement.netty;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

class ThrottleTest {
  @Test
  @DisplayName("the next frame is asked for only once the last one's time on the wire has passed, so it is the newest")
  void asksForTheNextFrameOnlyAfterTheDelay() {
    AtomicLong requested = new AtomicLong();
    // 92 bytes of body + 8 of header at 1,000 bytes/s: 100 ms each.
    StepVerifier.withVirtualTime(() -> Throttle.apply(
            Flux.range(0, 3).map(i -> new byte[92]).doOnRequest(n -> requested.addAndGet(n)), 1_000))
        .expectSubscription()
        .expectNextCount(1)
        .then(() -> assertEquals(1, requested.get(), "none taken ahead while the first one's time runs"))
        .thenAwait(Duration.ofMillis(100))
        .expectNextCount(1)
        .then(() -> assertEquals(2, requested.get()))
        .thenAwait(Duration.ofMillis(100))
        .expectNextCount(1)
        .thenAwait(Duration.ofMillis(100))
        .verifyComplete();
  }
}
