package dev.entanglement.samples.webflux;

import dev.entanglement.EntanglementNode;
import dev.entanglement.OwnerId;
import dev.entanglement.Registry;
import dev.entanglement.netty.WebFluxEndpoint;
import java.util.Map;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.web.reactive.HandlerMapping;
import org.springframework.web.reactive.handler.SimpleUrlHandlerMapping;
import org.springframework.web.reactive.socket.server.support.WebSocketHandlerAdapter;

/** The board node and its WebSocket endpoint at {@code /ws}. */
@Configuration(proxyBeanMethods = false)
@EnableConfigurationProperties(BoardProperties.class)
class BoardConfiguration {

  /** In memory; {@link ShapeBoard} starts and closes it with the application context. */
  @Bean(destroyMethod = "")
  EntanglementNode boardNode(BoardProperties properties) {
    return EntanglementNode.builder()
        .id(properties.nodeId())
        .owner(OwnerId.of(properties.nodeId()))
        .registry(Registry.builder("board").type(Shape.TYPE).build())
        .build();
  }

  @Bean
  WebFluxEndpoint webSocketEndpoint(EntanglementNode boardNode, BoardProperties properties) {
    return WebFluxEndpoint.builder(boardNode).upgrade(new TokenUpgrade(properties.peerTokens())).build();
  }

  /** {@code /ws}, ahead of the annotated controllers (order 0). */
  @Bean
  HandlerMapping webSocketMapping(WebFluxEndpoint webSocketEndpoint) {
    return new SimpleUrlHandlerMapping(Map.of("/ws", webSocketEndpoint.handler()), -1);
  }

  /**
   * Runs the protocol on upgraded sessions. Its order (1) comes before the adapter that WebFlux
   * declares itself (2), so WebSocket requests reach this one; other WebSocket handlers still get
   * Spring's handshake through it.
   */
  @Bean
  WebSocketHandlerAdapter webSocketAdapter(WebFluxEndpoint webSocketEndpoint) {
    return webSocketEndpoint.adapter();
  }
}
