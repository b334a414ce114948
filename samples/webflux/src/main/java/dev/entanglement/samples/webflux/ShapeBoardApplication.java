package dev.entanglement.samples.webflux;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * A shared shape board on Spring Boot WebFlux. The board node owns the shapes and decides every
 * change; browsers and scripts watch them as server-sent events and propose changes over HTTP;
 * other Entanglement nodes sync over the WebSocket endpoint.
 *
 * <ul>
 *   <li>{@code GET /shapes}: every shape, then every change ({@code text/event-stream}).
 *   <li>{@code POST /shapes/{id}}: proposes attributes; 200 committed, 409 rejected.
 *   <li>{@code /ws}: the Entanglement WebSocket endpoint, for peers holding a token.
 * </ul>
 */
@SpringBootApplication(proxyBeanMethods = false)
public class ShapeBoardApplication {

  public static void main(String[] args) {
    SpringApplication.run(ShapeBoardApplication.class, args);
  }
}
