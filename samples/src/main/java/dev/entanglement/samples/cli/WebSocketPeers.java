package dev.entanglement.samples.cli;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.netty.WebSocketServerTransport.Upgrade;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiFunction;
import java.util.regex.Pattern;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Mono;
import reactor.netty.http.server.HttpServerRequest;
import reactor.netty.http.server.HttpServerResponse;

/**
 * Who a browser connecting to {@code /ws} is. Its identity is {@code ws:} followed by the query
 * parameter {@code client} (1 to 64 letters, digits, {@code .}, {@code _}, {@code ~} or {@code -};
 * when absent, {@code anonymous-N} with a number counted per node): self-declared, so this is a
 * demo, not authentication. A connection with the same identity replaces the previous one, so each
 * tab should use its own.
 *
 * <p>With the query parameter {@code slow=1}, what the node sends on that connection is limited
 * to {@value #SLOW_LINK_BYTES_PER_SECOND} bytes per second (the demo's "slow link"), whatever
 * {@code --bandwidth} says; the engine's per-object coalescing then sends each object's newest
 * state when the link has room, so a slow tab sees jumps, never a growing lag.
 *
 * <p>Under the teams policy the query parameters {@code team} ({@code red}, {@code blue} or {@code
 * staff}) and {@code client} are required: without them, or with another team, the upgrade is
 * refused with 403. The
 * team is kept in the {@link TeamsPolicy} while the peer has a connection open, and the peer speaks
 * for one owner, named as its {@code client} parameter (the browser demo's owner id is its client
 * id): its objects under any other owner are refused.
 */
final class WebSocketPeers {
  private static final Logger log = LoggerFactory.getLogger(WebSocketPeers.class);
  static final Pattern CLIENT = Pattern.compile("[A-Za-z0-9._~-]{1,64}");
  /** The bandwidth of a connection opened with {@code slow=1}. */
  static final long SLOW_LINK_BYTES_PER_SECOND = 2_000;

  private final EntanglementNode node;
  private final @Nullable TeamsPolicy teams;
  /** Upgrades accepted whose connection has not ended yet, by request. */
  private final Map<HttpServerRequest, PeerId> accepted = new ConcurrentHashMap<>();
  /** Open connections per peer, to forget a team when the last one ends. */
  private final Map<PeerId, Integer> open = new ConcurrentHashMap<>();
  private final AtomicLong anonymous = new AtomicLong();

  WebSocketPeers(EntanglementNode node, @Nullable TeamsPolicy teams) {
    this.node = node;
    this.teams = teams;
  }

  /** The upgrade hook. */
  Mono<Upgrade> upgrade(HttpServerRequest request) {
    Map<String, List<String>> query = new QueryStringDecoder(request.uri()).parameters();
    String client = single(query, "client").orElseGet(() -> "anonymous-" + anonymous.incrementAndGet());
    if (!CLIENT.matcher(client).matches()) {
      log.warn("refused WebSocket from {}: invalid client parameter", request.remoteAddress());
      return Mono.just(Upgrade.forbidden());
    }
    PeerId peer = PeerId.of("ws:" + client);
    Upgrade accept =
        single(query, "slow").filter("1"::equals).isPresent()
            ? Upgrade.accept(peer, SLOW_LINK_BYTES_PER_SECOND)
            : Upgrade.accept(peer);
    if (teams == null) {
      return Mono.just(accept);
    }
    Optional<TeamsPolicy.Team> team = single(query, "team").flatMap(TeamsPolicy.Team::parse);
    if (team.isEmpty()) {
      log.warn("refused WebSocket from {}: team parameter missing or not red, blue or staff", request.remoteAddress());
      return Mono.just(Upgrade.forbidden());
    }
    if (single(query, "client").isEmpty()) {
      // The peer speaks for the owner its client id names: a generated id would name no owner of it.
      log.warn("refused WebSocket from {}: the teams policy needs a client parameter", request.remoteAddress());
      return Mono.just(Upgrade.forbidden());
    }
    accepted.put(request, peer);
    boolean[] changed = new boolean[1];
    // Counting and assigning in one step, so that a connection ending meanwhile cannot forget it.
    open.compute(peer, (p, n) -> {
      changed[0] = teams.assign(p, team.get(), Set.of(OwnerId.of(client)));
      return n == null ? 1 : n + 1;
    });
    log.info("WebSocket peer {} in team {}", peer, team.get().label());
    Mono<Void> refresh = changed[0] && node.isConnected(peer) ? node.refreshPolicy() : Mono.empty();
    return refresh.thenReturn(accept);
  }

  /**
   * Wraps the transport's handler to forget a peer's team when its last connection ends: when the
   * connection closes, not when the handler's publisher completes (Reactor Netty completes it once
   * the upgrade is done, while the WebSocket lives on).
   */
  BiFunction<HttpServerRequest, HttpServerResponse, Publisher<Void>> tracking(
      BiFunction<HttpServerRequest, HttpServerResponse, Publisher<Void>> handler) {
    if (teams == null) {
      return handler;
    }
    return (request, response) -> {
      request.withConnection(connection -> connection.onDispose(() -> ended(request)));
      return handler.apply(request, response);
    };
  }

  private void ended(HttpServerRequest request) {
    PeerId peer = accepted.remove(request);
    if (peer != null) {
      open.computeIfPresent(peer, (p, n) -> {
        if (n > 1) {
          return n - 1;
        }
        teams.forget(p);
        return null;
      });
    }
  }

  private static Optional<String> single(Map<String, List<String>> query, String name) {
    List<String> values = query.get(name);
    return values == null || values.size() != 1 ? Optional.empty() : Optional.of(values.get(0));
  }
}
