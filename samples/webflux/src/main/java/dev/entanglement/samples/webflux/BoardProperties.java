package dev.entanglement.samples.webflux;

import java.util.Map;
import org.springframework.boot.context.properties.ConfigurationProperties;
import org.springframework.boot.context.properties.bind.DefaultValue;

/**
 * The board's settings, under {@code board.*}.
 *
 * @param nodeId the board node's id, also its owner id (what WebSocket peers expect). Default
 *     {@code board}.
 * @param peerTokens the WebSocket peers: bearer token to peer id ({@code board.peer-tokens.TOKEN=PEER}).
 *     Default: none, so every upgrade is refused.
 */
@ConfigurationProperties("board")
record BoardProperties(@DefaultValue("board") String nodeId, Map<String, String> peerTokens) {

  BoardProperties {
    peerTokens = peerTokens == null ? Map.of() : Map.copyOf(peerTokens);
  }
}
