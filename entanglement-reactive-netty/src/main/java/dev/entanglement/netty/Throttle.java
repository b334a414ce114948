package dev.entanglement.netty;

import java.time.Duration;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * A bandwidth cap on a stream of frame bodies: after a frame of {@code n} bytes on the wire (body
 * and header) the next one is requested only {@code n / bytesPerSecond} seconds later, so the rate
 * in frame bytes never exceeds the cap (WebSocket and TLS overhead are not counted), and at most
 * one frame is outstanding: the engine's coalescing queue absorbs the overload. Each delay starts
 * when its frame is sent, so time lost between threads is not made up: with small frames on a
 * busy machine the rate stays well below the cap.
 */
final class Throttle {
  private Throttle() {}

  /** {@code frames} capped at {@code bytesPerSecond}; {@code frames} itself if that is 0 or less (no cap). */
  static Publisher<byte[]> apply(Publisher<byte[]> frames, long bytesPerSecond) {
    if (bytesPerSecond <= 0) {
      return frames;
    }
    return Flux.from(frames).concatMap(
        body ->
            body.length == 0 // Link.END_OF_BURST: takes no time on the wire
                ? Mono.just(body)
                : Mono.just(body)
                    .concatWith(
                        Mono.delay(
                                Duration.ofNanos(
                                    Framing.wireBytes(body) * 1_000_000_000L / bytesPerSecond))
                            .then(Mono.empty())),
        // No prefetch: the next frame is asked for once the delay is over, not before. It may still
        // wait here for the link's demand, one frame at most, and leave older than the object's
        // newest state (review, session 30; README, "Not yet").
        0);
  }
}
