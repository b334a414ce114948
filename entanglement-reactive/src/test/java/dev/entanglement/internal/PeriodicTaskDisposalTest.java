package dev.entanglement.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

class PeriodicTaskDisposalTest {
  @Test
  @Timeout(60)
  @DisplayName("periodic tasks disposed on non-blocking threads, contending for one executor, never trip BlockHound")
  void disposeOnNonBlockingThreads() {
    Scheduler target = Schedulers.newSingle("periodic-target");
    Scheduler disposers = Schedulers.newParallel("periodic-disposers", 2);
    List<Throwable> errors = new CopyOnWriteArrayList<>();
    try {
      // Two non-blocking threads schedule and cancel periodic tasks on one executor: their
      // removals contend for its queue's lock, as an event loop detaching a link does with the
      // scheduler's own thread.
      Flux.range(0, 2)
          .flatMap(i -> Mono.fromRunnable(() -> {
            for (int n = 0; n < 20_000 && errors.isEmpty(); n++) {
              try {
                Disposable task = target.schedulePeriodically(() -> {}, 1, 1, TimeUnit.HOURS);
                task.dispose();
              } catch (Throwable e) {
                errors.add(e);
              }
            }
          }).subscribeOn(disposers))
          .blockLast(Duration.ofSeconds(50));
      assertEquals(List.of(), errors);
      // The executor still runs timers.
      assertEquals(0L, Mono.delay(Duration.ofMillis(1), target).block(Duration.ofSeconds(5)));
    } finally {
      target.dispose();
      disposers.dispose();
    }
  }
}
