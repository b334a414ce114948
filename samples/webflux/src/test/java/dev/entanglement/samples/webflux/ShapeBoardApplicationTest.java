package dev.entanglement.samples.webflux;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.entanglement.EntanglementNode;
import dev.entanglement.ErrorCode;
import dev.entanglement.Outcome;
import dev.entanglement.OwnerId;
import dev.entanglement.PeerId;
import dev.entanglement.Registry;
import dev.entanglement.Snapshot;
import dev.entanglement.netty.WebSocketClientTransport;
import io.netty.channel.ChannelOption;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedTransferQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.boot.test.web.server.LocalServerPort;
import org.springframework.core.ParameterizedTypeReference;
import org.springframework.http.HttpStatus;
import org.springframework.http.MediaType;
import org.springframework.http.ResponseEntity;
import org.springframework.http.codec.ServerSentEvent;
import org.springframework.test.web.reactive.server.WebTestClient;
import org.springframework.web.reactive.function.client.WebClient;
import reactor.core.Disposable;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.netty.http.client.HttpClient;
import reactor.test.StepVerifier;
import tools.jackson.databind.json.JsonMapper;

/** The board served for real on a random local port, exercised over HTTP and WebSocket. */
@SpringBootTest(
    webEnvironment = SpringBootTest.WebEnvironment.RANDOM_PORT,
    properties = {"server.address=127.0.0.1", "board.peer-tokens.test-token=alpha"})
class ShapeBoardApplicationTest {
  private static final Duration WAIT = Duration.ofSeconds(30);
  private static final ParameterizedTypeReference<ServerSentEvent<ShapeEvent>> EVENTS =
      new ParameterizedTypeReference<>() {};

  @LocalServerPort int port;
  @Autowired EntanglementNode board;

  private WebTestClient client;

  @BeforeEach
  void connect() {
    client = WebTestClient.bindToServer().baseUrl("http://127.0.0.1:" + port).responseTimeout(WAIT).build();
  }

  private Flux<ServerSentEvent<ShapeEvent>> shapes() {
    return client.get().uri("/shapes").accept(MediaType.TEXT_EVENT_STREAM).exchange()
        .expectStatus().isOk()
        .expectHeader().contentTypeCompatibleWith(MediaType.TEXT_EVENT_STREAM)
        .returnResult(EVENTS)
        .getResponseBody();
  }

  @Test
  void eventStreamSendsEveryShapeThenLaterCommits() {
    WebClient http = WebClient.create("http://127.0.0.1:" + port);
    AtomicReference<CompletableFuture<ResponseEntity<ProposalAnswer>>> answer = new AtomicReference<>();
    StepVerifier.create(shapes())
        .recordWith(ArrayList::new)
        .expectNextCount(ShapeBoard.INITIAL.size())
        .consumeRecordedWith(events -> {
          assertEquals(Set.of("sun", "house", "logo"),
              events.stream().map(e -> e.data().key()).collect(Collectors.toSet()));
          events.forEach(e -> {
            assertEquals("shape", e.event());
            assertEquals("board", e.data().owner());
            assertFalse(e.data().deleted());
            assertEquals(e.data().key(), e.data().value().id());
          });
        })
        // Runs on the event loop that delivered the last event: propose without blocking.
        .then(() -> answer.set(http.post().uri("/shapes/house").contentType(MediaType.APPLICATION_JSON)
            .bodyValue(Map.of("x", 222.0)).retrieve().toEntity(ProposalAnswer.class).toFuture()))
        .assertNext(e -> {
          assertEquals("house", e.data().key());
          assertEquals(222.0, e.data().value().x());
          assertEquals(board.get(Shape.TYPE, "house").orElseThrow().version(), e.data().version());
        })
        .thenCancel()
        .verify(WAIT);
    ResponseEntity<ProposalAnswer> response = answer.get().orTimeout(WAIT.toSeconds(), TimeUnit.SECONDS).join();
    assertEquals(HttpStatus.OK, response.getStatusCode());
    assertTrue(response.getBody().committed());
    assertEquals(222.0, response.getBody().state().value().x());
  }

  @Test
  void committedProposalAnswers200AndTheStreamShowsIt() {
    client.post().uri("/shapes/sun").contentType(MediaType.APPLICATION_JSON)
        .bodyValue(Map.of("x", 333.0, "color", "#ff0000")).exchange()
        .expectStatus().isOk()
        .expectBody()
        .jsonPath("$.committed").isEqualTo(true)
        .jsonPath("$.state.key").isEqualTo("sun")
        .jsonPath("$.state.owner").isEqualTo("board")
        .jsonPath("$.state.value.x").isEqualTo(333.0)
        .jsonPath("$.state.value.y").isEqualTo(40.0)
        .jsonPath("$.state.value.color").isEqualTo("#ff0000")
        .jsonPath("$.code").doesNotExist();
    StepVerifier.create(shapes().filter(e -> e.data().key().equals("sun")).take(1))
        .assertNext(e -> {
          assertEquals(333.0, e.data().value().x());
          assertEquals("#ff0000", e.data().value().color());
        })
        .verifyComplete();
  }

  @Test
  void lockedShapeRejectsWith409AndKeepsItsState() {
    Snapshot<Shape> before = board.get(Shape.TYPE, "logo").orElseThrow();
    client.post().uri("/shapes/logo").contentType(MediaType.APPLICATION_JSON)
        .bodyValue(Map.of("x", 99.0)).exchange()
        .expectStatus().isEqualTo(HttpStatus.CONFLICT)
        .expectBody()
        .jsonPath("$.committed").isEqualTo(false)
        .jsonPath("$.code").isEqualTo("INVALID_OPERATION")
        .jsonPath("$.message").isEqualTo("shape 'logo' is locked")
        .jsonPath("$.state").doesNotExist();
    assertEquals(before, board.get(Shape.TYPE, "logo").orElseThrow());
  }

  @Test
  void otherRejectionsHaveTheirOwnStatus() {
    client.post().uri("/shapes/house").contentType(MediaType.APPLICATION_JSON)
        .bodyValue(Map.of("w", 0)).exchange()
        .expectStatus().isEqualTo(HttpStatus.CONFLICT)
        .expectBody().jsonPath("$.message").isEqualTo("width and height must be positive");
    client.post().uri("/shapes/moon").contentType(MediaType.APPLICATION_JSON)
        .bodyValue(Map.of("x", 1.0)).exchange()
        .expectStatus().isNotFound()
        .expectBody().jsonPath("$.code").isEqualTo("NOT_FOUND");
    client.post().uri("/shapes/house").contentType(MediaType.APPLICATION_JSON)
        .bodyValue(Map.of("x", "left")).exchange()
        .expectStatus().isBadRequest()
        .expectBody().jsonPath("$.code").isEqualTo("BAD_ENCODING");
  }

  @Test
  void slowEventStreamClientGetsTheLatestStatesNotABacklog() throws InterruptedException {
    int updates = 5_000;
    Shape spinner = new Shape("spinner", "ana", "red", "rect", 0, 0, 10, 10, "#".repeat(1_000), false);
    board.publish(Shape.TYPE, spinner).block(WAIT);
    // A raw reader that asks for one chunk of the body at a time, so that the test decides when
    // the client reads (WebClient's event decoder prefetches on its own, and reads byte by byte,
    // which paranoid leak detection makes slow); a small receive window keeps the socket buffers
    // small too.
    // Filled on the client's event loop: a lock-free queue, as a LinkedBlockingQueue's lock can park
    // that thread when the test thread polls at the same moment (BlockHound ends the stream then).
    BlockingQueue<String> chunks = new LinkedTransferQueue<>();
    BaseSubscriber<String> reader = new BaseSubscriber<>() {
      @Override
      protected void hookOnSubscribe(Subscription subscription) {
        subscription.request(1);
      }

      @Override
      protected void hookOnNext(String chunk) {
        chunks.add(chunk);
      }
    };
    HttpClient.create().option(ChannelOption.SO_RCVBUF, 16 * 1024)
        .headers(h -> h.set("Accept", MediaType.TEXT_EVENT_STREAM_VALUE))
        .get().uri("http://127.0.0.1:" + port + "/shapes")
        .responseContent().asString(StandardCharsets.UTF_8)
        .subscribe(reader);
    try {
      EventText text = new EventText();
      int current = ShapeBoard.INITIAL.size() + 1;
      int seen = text.append(next(chunks)).size();
      while (seen < current) { // the current state: read on until every shape has arrived, then stop
        reader.request(1);
        seen += text.append(next(chunks)).size();
      }
      // The reader reads nothing more while the spinner turns 5,000 times.
      Flux.range(1, updates)
          .concatMap(i -> board.publish(Shape.TYPE, new Shape("spinner", "ana", "red", "rect", i, 0, 10, 10,
              spinner.color(), false)))
          .blockLast(Duration.ofMinutes(1));
      reader.request(Long.MAX_VALUE);
      int spinnerEvents = 0;
      boolean finalState = false;
      while (!finalState) {
        for (ShapeEvent e : text.append(next(chunks))) {
          if (e.key().equals("spinner")) {
            spinnerEvents++;
            finalState = e.value().x() == updates;
          }
        }
      }
      assertTrue(spinnerEvents < updates / 2,
          spinnerEvents + " of " + updates + " updates were delivered: a backlog, not the latest states");
    } finally {
      reader.dispose();
      board.delete(Shape.TYPE, "spinner").block(WAIT);
    }
  }

  private static String next(BlockingQueue<String> chunks) throws InterruptedException {
    String chunk = chunks.poll(WAIT.toSeconds(), TimeUnit.SECONDS);
    assertNotNull(chunk, "no more events within " + WAIT);
    return chunk;
  }

  /** The text of an event stream, read chunk by chunk; yields each event once it is complete. */
  private static final class EventText {
    private static final JsonMapper JSON = JsonMapper.builder().build();
    private final StringBuilder pending = new StringBuilder();

    List<ShapeEvent> append(String chunk) {
      pending.append(chunk);
      List<ShapeEvent> events = new ArrayList<>();
      for (int end = pending.indexOf("\n\n"); end >= 0; end = pending.indexOf("\n\n")) {
        String event = pending.substring(0, end);
        pending.delete(0, end + 2);
        event.lines().filter(l -> l.startsWith("data:"))
            .forEach(l -> events.add(JSON.readValue(l.substring("data:".length()), ShapeEvent.class)));
      }
      return events;
    }
  }

  @Test
  void webSocketRefusesMissingOrUnknownTokensBeforeUpgrading() {
    assertEquals(401, upgradeStatus(HttpClient.create(), "/ws"));
    assertEquals(403, upgradeStatus(
        HttpClient.create().headers(h -> h.set("Authorization", "Bearer nope")), "/ws"));
    assertEquals(403, upgradeStatus(HttpClient.create(), "/ws?token=nope"));
  }

  @Test
  void webSocketPeerWithATokenSyncsTheShapesAndProposesThroughTheBoard() {
    EntanglementNode alpha = peer();
    Disposable link = WebSocketClientTransport.builder(alpha)
        .uri("ws://127.0.0.1:" + port + "/ws").expect(PeerId.of("board"))
        .headers(h -> h.set("Authorization", "Bearer test-token"))
        .build().connectAndAttach().subscribe();
    try {
      Set<String> seen = alpha.watchAll(Shape.TYPE).map(s -> s.key().key())
          .distinct().take(ShapeBoard.INITIAL.size()).collect(Collectors.toSet()).block(WAIT);
      assertEquals(Set.of("sun", "house", "logo"), seen);
      assertTrue(board.isConnected(PeerId.of("alpha")));

      Outcome<Shape> locked = alpha.propose(Shape.TYPE, "logo", Map.of("x", 1.0)).block(WAIT);
      assertInstanceOf(Outcome.Rejected.class, locked);
      assertEquals(ErrorCode.INVALID_OPERATION, ((Outcome.Rejected<Shape>) locked).code());

      Outcome<Shape> resized = alpha.propose(Shape.TYPE, "house", Map.of("w", 77.0)).block(WAIT);
      assertTrue(resized.isCommitted(), () -> "rejected: " + resized);
      assertEquals(77.0, board.get(Shape.TYPE, "house").orElseThrow().require().w());
    } finally {
      link.dispose();
      alpha.close().block(WAIT);
    }
  }

  @Test
  void webSocketTokenMayComeAsAQueryParameter() {
    EntanglementNode alpha = peer();
    Disposable link = WebSocketClientTransport.builder(alpha)
        .uri("ws://127.0.0.1:" + port + "/ws?token=test-token").expect(PeerId.of("board"))
        .build().connectAndAttach().subscribe();
    try {
      Snapshot<Shape> logo = alpha.watch(Shape.TYPE, "logo").blockFirst(WAIT);
      assertTrue(logo.require().locked());
      assertTrue(board.isConnected(PeerId.of("alpha")));
    } finally {
      link.dispose();
      alpha.close().block(WAIT);
    }
  }

  private static EntanglementNode peer() {
    return EntanglementNode.builder()
        .id("alpha")
        .owner(OwnerId.of("alpha"))
        .registry(Registry.builder("board").type(Shape.TYPE).build())
        .build();
  }

  private int upgradeStatus(HttpClient http, String path) {
    return http
        .headers(h -> h.set("Upgrade", "websocket").set("Connection", "Upgrade")
            .set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==").set("Sec-WebSocket-Version", "13"))
        .get().uri("http://127.0.0.1:" + port + path)
        .response().map(r -> r.status().code()).block(WAIT);
  }
}
