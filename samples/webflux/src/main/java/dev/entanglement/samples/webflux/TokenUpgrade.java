package dev.entanglement.samples.webflux;

import dev.entanglement.PeerId;
import dev.entanglement.netty.WebSocketServerTransport.Upgrade;
import java.util.Map;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.springframework.http.HttpHeaders;
import org.springframework.http.server.reactive.ServerHttpRequest;
import org.springframework.web.server.ServerWebExchange;
import reactor.core.publisher.Mono;

/**
 * The WebSocket upgrade hook: a token names the peer. The token comes from {@code Authorization:
 * Bearer TOKEN}, or from the query parameter {@code token} for clients that cannot set headers
 * (browsers). No token: 401; an unknown token: 403.
 */
final class TokenUpgrade implements Function<ServerWebExchange, Mono<Upgrade>> {
  private static final String BEARER = "Bearer ";

  private final Map<String, String> peerByToken;

  TokenUpgrade(Map<String, String> peerByToken) {
    this.peerByToken = Map.copyOf(peerByToken);
  }

  @Override
  public Mono<Upgrade> apply(ServerWebExchange exchange) {
    String token = token(exchange.getRequest());
    if (token == null) {
      return Mono.just(Upgrade.unauthorized());
    }
    String peer = peerByToken.get(token);
    return Mono.just(peer == null ? Upgrade.forbidden() : Upgrade.accept(PeerId.of(peer)));
  }

  private static @Nullable String token(ServerHttpRequest request) {
    String authorization = request.getHeaders().getFirst(HttpHeaders.AUTHORIZATION);
    if (authorization != null && authorization.startsWith(BEARER)) {
      return authorization.substring(BEARER.length()).trim();
    }
    return request.getQueryParams().getFirst("token");
  }
}
