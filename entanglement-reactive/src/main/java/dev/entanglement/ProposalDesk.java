package dev.entanglement;

import dev.entanglement.internal.SerialExecutor;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.publisher.Operators;

/**
 * Who decides the proposals of a node's own objects: the {@code proposals()} subscribers of their
 * type, or the registry's default decision. Everything here runs on the engine's executor except
 * {@link #proposals} and {@link #decided}, which any thread may call; a subscriber's {@code onNext},
 * and so {@link Proposal#takenBy}, may run on the subscriber's thread.
 *
 * <p>A proposal, once offered ({@link #offer}): {@code WAITING} (in {@link #waiting}, by arrival)
 * → {@code HANDED} (in its sink's buffer and its subscriber's {@link Decider#handed}) → {@code
 * TAKEN} (delivered: that subscriber decides it). {@code HANDED} goes back to {@code WAITING}, in
 * its place, when the subscriber leaves or Reactor discards it. From any state it may be decided
 * (a subscriber, a timeout, the node closing), and is then forgotten here ({@link #stopWaiting}).
 *
 * <p>Per type: while a subscriber is registered, even one that cancelled and whose leaving has not
 * been handled yet, no default decision is made; proposals wait and go, oldest first, to the first
 * subscriber that has asked for one. With none registered, every proposal gets the default
 * decision, those waiting first, in arrival order: an object's proposals are decided in order. A
 * decision the default decision makes during its call takes effect as soon as that call returns,
 * before any other engine task, so no task in between can make it stale; never inside the
 * application's call. One made later, or on another thread, is an engine task like any other.
 */
final class ProposalDesk {
  private static final Logger log = LoggerFactory.getLogger(ProposalDesk.class);

  private final String nodeId;
  private final SerialExecutor serial;
  private final Function<String, TypeBinding<?>> types;
  private final BooleanSupplier closed;
  private final Consumer<Throwable> taskFailed;

  private final Map<String, List<Decider>> deciders = new HashMap<>();
  /**
   * Per type, undecided proposals that found subscribers but none that had asked for one, by
   * arrival ({@link Proposal#arrival}): handed out as subscribers ask, handed back if the
   * subscriber cancelled before taking one, and dropped here when decided otherwise (a timeout, the
   * node closing), so that a subscriber that stops asking holds none of them.
   */
  private final Map<String, TreeMap<Long, Proposal<?>>> waiting = new HashMap<>();
  /** Proposals this node received, counted: the last one's {@link Proposal#arrival}. */
  private long proposalsReceived;
  /**
   * The proposal the registry's default decision is deciding, and the thread it runs on (the
   * engine's): its decision, if made there and then, takes effect as soon as the default decision
   * returns. Written on the engine only; another thread never matches the thread, whatever it
   * reads.
   */
  private @Nullable Proposal<?> decidingByDefault;
  private @Nullable Thread decidingThread;
  /** That decision's effect, run when the default decision returns. */
  private @Nullable Runnable decidedByDefault;

  /**
   * @param types the binding of a type name
   * @param closed whether the node is closing: subscribers leaving then decide nothing
   * @param taskFailed reports a decision's effect that threw, as a failed engine task
   */
  ProposalDesk(
      String nodeId,
      SerialExecutor serial,
      Function<String, TypeBinding<?>> types,
      BooleanSupplier closed,
      Consumer<Throwable> taskFailed) {
    this.nodeId = nodeId;
    this.serial = serial;
    this.types = types;
    this.closed = closed;
    this.taskFailed = taskFailed;
  }

  /** The next arrival number. */
  long nextArrival() {
    return ++proposalsReceived;
  }

  /** The proposals of {@code type}, for one subscriber per subscription. Any thread. */
  Flux<Proposal<?>> proposals(String type) {
    return Flux.defer(() -> {
      // This subscription's decider, set and read on the engine's executor.
      Decider[] self = new Decider[1];
      return Flux.<Proposal<?>>create(
              sink ->
                  serial.execute(
                      () -> {
                        if (closed.getAsBoolean()) {
                          sink.complete();
                          return;
                        }
                        Decider decider = new Decider(sink);
                        self[0] = decider;
                        deciders.computeIfAbsent(type, k -> new ArrayList<>()).add(decider);
                        // Called at once with what was requested so far, then with each request.
                        sink.onRequest(n -> serial.execute(() -> {
                          decider.credit = Operators.addCap(decider.credit, n);
                          handOut(type);
                        }));
                        sink.onDispose(() -> serial.execute(() -> deciderGone(type, decider)));
                      }))
          .doOnNext(p -> p.takenBy = self[0])
          // A proposal handed to a subscriber that cancelled before taking it goes to another one.
          .doOnDiscard(Proposal.class, p -> serial.execute(() -> handBack(self[0], p)));
    });
  }

  /** The node is closing: every subscriber completes (the engine then rejects what is undecided). */
  void close() {
    deciders.values().forEach(l -> new ArrayList<>(l).forEach(d -> d.sink.complete()));
  }

  /**
   * {@code p} was decided: {@code apply} makes the decision take effect, at once after a default
   * decision made on the engine's thread, else as an engine task. Any thread.
   */
  void decided(Proposal<?> p, Runnable apply) {
    if (p == decidingByDefault && Thread.currentThread() == decidingThread) {
      decidedByDefault = apply;
    } else {
      serial.execute(apply);
    }
  }

  /**
   * The first subscriber that has asked for a proposal decides it; if none has, it waits here until
   * one asks (or the decision times out). Never the default decision while a subscriber is
   * registered, even one that has cancelled and whose leaving ({@link #deciderGone}) has not run
   * yet: proposals handed to that one come back then, and would be decided after newer ones. With
   * none registered, the proposals waiting, and {@code p} in its place among them, get the default
   * decision in arrival order, so that an object's proposals are decided in order.
   */
  void offer(Proposal<?> p) {
    String type = p.type().name();
    boolean registered = registered(type);
    if (!registered && !waiting.containsKey(type)) {
      decideByDefault(p);
      return;
    }
    waiting.computeIfAbsent(type, t -> new TreeMap<>()).put(p.arrival, p);
    if (registered) {
      handOut(type);
    } else {
      decideWaitingByDefault(type);
    }
  }

  /** Forgets {@code p} as waiting for a subscriber: it was decided. */
  void stopWaiting(Proposal<?> p) {
    String type = p.type().name();
    TreeMap<Long, Proposal<?>> w = waiting.get(type);
    if (w != null && w.remove(p.arrival, p) && w.isEmpty()) {
      waiting.remove(type);
    }
  }

  /**
   * A proposal {@code decider}'s subscriber cancelled before taking: it waits again, in its place,
   * or is decided; unless the subscriber's leaving already put it back.
   */
  private void handBack(@Nullable Decider decider, Proposal<?> p) {
    if (decider != null && decider.handed.remove(p) && !p.isDecided()) {
      offer(p);
    }
  }

  /**
   * A {@code proposals()} subscriber, with the proposals it asked for and was not handed yet:
   * counted here, on the engine, from each request, because the sink's own count falls only once
   * its subscriber has taken a proposal, which another thread may be doing meanwhile.
   */
  private static final class Decider {
    final FluxSink<Proposal<?>> sink;
    long credit;
    /**
     * Proposals handed to the sink, oldest first. The sink delivers in that order, so those its
     * subscriber took ({@link Proposal#takenBy}) or that were decided are at the head, and are
     * dropped from it at each hand-out: what is left is what the subscriber asked for and has not
     * taken, plus those taken since the last hand-out.
     */
    final ArrayDeque<Proposal<?>> handed = new ArrayDeque<>();

    Decider(FluxSink<Proposal<?>> sink) {
      this.sink = sink;
    }

    void forgetTaken() {
      for (Proposal<?> h = handed.peekFirst();
          h != null && (h.takenBy == this || h.isDecided());
          h = handed.peekFirst()) {
        handed.pollFirst();
      }
    }
  }

  /** Whether a subscriber of {@code type}'s proposals is registered, cancelled or not. */
  private boolean registered(String type) {
    List<Decider> ds = deciders.get(type);
    return ds != null && !ds.isEmpty();
  }

  /**
   * Runs the registry's default decision on {@code p}; a decision it makes at once takes effect
   * when it returns, outside the application's code (which therefore never sees engine work, or
   * another default decision, run inside its call).
   */
  private void decideByDefault(Proposal<?> p) {
    decidingByDefault = p;
    decidingThread = Thread.currentThread();
    try {
      types.apply(p.type().name()).registry().defaultDecision().accept(p);
    } catch (RuntimeException e) {
      failedToDecide(p, e);
    } finally {
      decidingByDefault = null;
      decidingThread = null;
    }
    Runnable apply = decidedByDefault;
    decidedByDefault = null;
    if (apply != null) {
      try {
        apply.run();
      } catch (RuntimeException e) {
        taskFailed.accept(e); // as if it had run as a task of its own
      }
    }
  }

  /** Hands waiting proposals of {@code type}, oldest first, to subscribers that asked for one. */
  private void handOut(String type) {
    TreeMap<Long, Proposal<?>> w = waiting.get(type);
    List<Decider> ds = deciders.get(type);
    while (w != null && !w.isEmpty() && ds != null) {
      Decider target = null;
      for (Decider d : ds) {
        if (!d.sink.isCancelled() && d.credit > 0) {
          target = d;
          break;
        }
      }
      if (target == null) {
        return;
      }
      Proposal<?> p = w.pollFirstEntry().getValue();
      if (w.isEmpty()) {
        waiting.remove(type);
      }
      if (p.isDecided()) {
        continue; // its decision is on its way to stopWaiting
      }
      target.credit--;
      target.forgetTaken();
      target.handed.addLast(p);
      try {
        target.sink.next(p);
      } catch (RuntimeException e) {
        failedToDecide(p, e);
      }
    }
  }

  /**
   * A subscriber left: the proposals handed to it and not taken wait again, in their places. The
   * proposals waiting go to the subscribers left; once none is registered they get the default
   * decision, as later ones do (unless the node is closing, which rejects them).
   */
  private void deciderGone(String type, Decider decider) {
    List<Decider> ds = deciders.get(type);
    if (ds != null) {
      ds.remove(decider);
    }
    // Reactor discards what is left in the sink after this runs: handBack then finds them gone.
    for (Proposal<?> p : decider.handed) {
      if (p.takenBy != decider && !p.isDecided()) {
        waiting.computeIfAbsent(type, t -> new TreeMap<>()).put(p.arrival, p);
      }
    }
    decider.handed.clear();
    if (closed.getAsBoolean()) {
      return;
    }
    if (registered(type)) {
      handOut(type);
    } else {
      decideWaitingByDefault(type);
    }
  }

  /** Gives the default decision to the proposals of {@code type} waiting for a subscriber, oldest first. */
  private void decideWaitingByDefault(String type) {
    TreeMap<Long, Proposal<?>> w = waiting.remove(type);
    if (w == null) {
      return;
    }
    for (Proposal<?> p : w.values()) {
      if (!p.isDecided()) {
        decideByDefault(p);
      }
    }
  }

  private void failedToDecide(Proposal<?> p, RuntimeException e) {
    log.error("node {}: proposal handler failed for {}", nodeId, p, e);
    p.reject(ErrorCode.INVALID_OPERATION, "the owner failed to decide");
  }
}
