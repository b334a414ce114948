package dev.entanglement.netty;

import java.time.Duration;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * A bandwidth cap on a stream of frame bodies: after a frame of {@code n} bytes on the wire (body
 * and header) the next one is requested only {@code n / bytesPerSecond} seconds later, so the rate
 * never exceeds the cap, and
 * at most one frame is outstanding: the engine's coalescing queue absorbs the overload.
 */
final class Throttle {
  private Throttle() {}

  static Flux<byte[]> apply(Flux<byte[]> frames, long bytesPerSecond) {
    if (bytesPerSecond <= 0) {
      return frames;
    }
    return frames.concatMap(
        body ->
            body.length == 0 // Link.END_OF_BURST: takes no time on the wire
                ? Mono.just(body)
                : Mono.just(body)
                    .concatWith(
                        Mono.delay(
                                Duration.ofNanos(
                                    Framing.wireBytes(body) * 1_000_000_000L / bytesPerSecond))
                            .then(Mono.empty())),
        0); // no prefetch: the next frame is asked for only after the delay, so it is the newest
  }
}
