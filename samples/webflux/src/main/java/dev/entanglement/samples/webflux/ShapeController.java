package dev.entanglement.samples.webflux;

import dev.entanglement.EntanglementException;
import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.Outcome;
import java.util.Map;
import org.springframework.http.HttpStatus;
import org.springframework.http.MediaType;
import org.springframework.http.ResponseEntity;
import org.springframework.http.codec.ServerSentEvent;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PathVariable;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RequestMapping;
import org.springframework.web.bind.annotation.RestController;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** The board over HTTP: shapes as server-sent events, changes as proposals to the owner. */
@RestController
@RequestMapping("/shapes")
final class ShapeController {
  private final EntanglementNode node;

  ShapeController(EntanglementNode node) {
    this.node = node;
  }

  /**
   * Every shape, then every change, as events named {@code shape} whose data is a {@link
   * ShapeEvent}. Backpressure is per shape: a client that reads slowly gets each shape's latest
   * state, not a backlog of its past ones.
   */
  @GetMapping(produces = MediaType.TEXT_EVENT_STREAM_VALUE)
  Flux<ServerSentEvent<ShapeEvent>> watch() {
    return node.watchAll(Shape.TYPE)
        .map(s -> ServerSentEvent.builder(ShapeEvent.of(s)).event("shape").build());
  }

  /**
   * Proposes new values for some attributes of a shape; the board (its owner) decides. Statuses:
   * 200 committed; 409 rejected by the owner (for example a locked shape); 404 no such shape; 400
   * attributes that do not make a shape; 503 the board could not answer (it is shutting down).
   */
  @PostMapping(
      path = "/{id}",
      consumes = MediaType.APPLICATION_JSON_VALUE,
      produces = MediaType.APPLICATION_JSON_VALUE)
  Mono<ResponseEntity<ProposalAnswer>> propose(
      @PathVariable("id") String id, @RequestBody Map<String, Object> attributes) {
    return node.propose(Shape.TYPE, id, attributes)
        .map(outcome -> ResponseEntity.status(status(outcome)).body(ProposalAnswer.of(outcome)))
        .onErrorResume(
            EntanglementException.class,
            e -> Mono.just(ResponseEntity.status(HttpStatus.SERVICE_UNAVAILABLE)
                .body(ProposalAnswer.failed(e.code(), e.getMessage()))));
  }

  private static HttpStatus status(Outcome<Shape> outcome) {
    if (!(outcome instanceof Outcome.Rejected<Shape> rejected)) {
      return HttpStatus.OK;
    }
    ErrorCode code = rejected.code();
    if (code == ErrorCode.NOT_FOUND) {
      return HttpStatus.NOT_FOUND;
    }
    return code == ErrorCode.BAD_ENCODING ? HttpStatus.BAD_REQUEST : HttpStatus.CONFLICT;
  }
}
