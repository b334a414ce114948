package dev.entanglement.samples.cli;

import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.function.BiFunction;
import java.util.function.Supplier;
import java.util.regex.Pattern;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.netty.http.server.HttpServerRequest;
import reactor.netty.http.server.HttpServerResponse;

/**
 * The node's HTTP server: the WebSocket endpoint at {@code /ws}, a JSON description of the node at
 * {@code /api/node}, the node's statistics as JSON at {@code /api/stats} ({@link StatsJson}), the
 * JavaScript client from the {@code entanglement-js} jar (class path folder {@value #CLIENT}) at
 * {@code /js/}, and the demo's static files from the class path folder {@value #ASSETS} at {@code /}
 * ({@code index.html} for a path ending in {@code /}). GET only.
 *
 * <p>Static files are read from the class path on {@link Schedulers#boundedElastic()}, never on an
 * event loop, and kept in memory once read. Only names made of letters, digits, {@code .}, {@code
 * _} and {@code -} in each segment, with a known extension, are served. The statistics are read with
 * {@code statsConsistent()}, which answers from the engine without blocking the event loop.
 *
 * <p>A response whose content is produced off the connection's event loop (a file read, the
 * statistics) is sent from that event loop again: the response and the end of the handler then
 * happen there in order, never racing the next request of a keep-alive connection. (Requests that
 * followed such a response were seen to go unanswered now and then: a browser page that never
 * loaded, a GET of {@code /api/node} after {@code /api/stats} that timed out.)
 */
final class HttpFrontend {
  static final String ASSETS = "dev/entanglement/samples/web/";
  static final String WEBSOCKET_PATH = "/ws";
  static final String NODE_PATH = "/api/node";
  static final String STATS_PATH = "/api/stats";
  static final String CLIENT = "dev/entanglement/js/";
  static final String CLIENT_PATH = "/js/";

  private static final Pattern SAFE_PATH = Pattern.compile("(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*/?");
  private static final Map<String, String> TYPES =
      Map.ofEntries(
          Map.entry("html", "text/html; charset=utf-8"),
          Map.entry("js", "text/javascript; charset=utf-8"),
          Map.entry("mjs", "text/javascript; charset=utf-8"),
          Map.entry("css", "text/css; charset=utf-8"),
          Map.entry("json", "application/json"),
          Map.entry("map", "application/json"),
          Map.entry("svg", "image/svg+xml"),
          Map.entry("png", "image/png"),
          Map.entry("ico", "image/x-icon"),
          Map.entry("txt", "text/plain; charset=utf-8"),
          Map.entry("wasm", "application/wasm"));

  private final BiFunction<HttpServerRequest, HttpServerResponse, Publisher<Void>> websocket;
  private final Supplier<Mono<byte[]>> statsJson;
  /** Files read, by class path resource name. */
  private final Map<String, byte[]> assets = new ConcurrentHashMap<>();
  private volatile byte @Nullable [] nodeJson;

  /**
   * @param websocket the WebSocket endpoint's handler
   * @param statsJson what {@code /api/stats} answers, read anew for every request
   */
  HttpFrontend(
      BiFunction<HttpServerRequest, HttpServerResponse, Publisher<Void>> websocket,
      Supplier<Mono<byte[]>> statsJson) {
    this.websocket = websocket;
    this.statsJson = statsJson;
  }

  /** Sets what {@code /api/node} answers, once the node's addresses are known. */
  void nodeJson(byte[] json) {
    this.nodeJson = json.clone();
  }

  Publisher<Void> handle(HttpServerRequest request, HttpServerResponse response) {
    String path = new QueryStringDecoder(request.uri()).path();
    if (!request.method().equals(HttpMethod.GET)) {
      return response.status(HttpResponseStatus.METHOD_NOT_ALLOWED).header(HttpHeaderNames.ALLOW, "GET").send();
    }
    if (path.equals(WEBSOCKET_PATH)) {
      return websocket.apply(request, response);
    }
    if (path.equals(NODE_PATH)) {
      byte[] json = nodeJson;
      if (json == null) {
        return response.status(HttpResponseStatus.SERVICE_UNAVAILABLE).send();
      }
      return send(response, json, "application/json");
    }
    if (path.equals(STATS_PATH)) {
      return statsJson.get()
          .publishOn(eventLoopOf(request))
          .flatMap(json -> Mono.from(send(response, json, "application/json")));
    }
    if (!SAFE_PATH.matcher(path).matches()) {
      return notFound(response);
    }
    String file = path.endsWith("/") ? path + "index.html" : path;
    String type = TYPES.get(file.substring(file.lastIndexOf('.') + 1));
    if (type == null) {
      return notFound(response);
    }
    String name =
        file.startsWith(CLIENT_PATH)
            ? CLIENT + file.substring(CLIENT_PATH.length())
            : ASSETS + file.substring(1);
    byte[] cached = assets.get(name);
    if (cached != null) {
      return send(response, cached, type);
    }
    return Mono.fromCallable(() -> read(name))
        .subscribeOn(Schedulers.boundedElastic())
        .publishOn(eventLoopOf(request))
        .flatMap(
            found ->
                found.isPresent()
                    ? Mono.from(send(response, cacheAndGet(name, found.get()), type))
                    : Mono.from(notFound(response)));
  }

  private static Scheduler eventLoopOf(HttpServerRequest request) {
    Executor[] loop = new Executor[1];
    request.withConnection(c -> loop[0] = c.channel().eventLoop());
    return Schedulers.fromExecutor(loop[0]);
  }

  private byte[] cacheAndGet(String name, byte[] body) {
    assets.putIfAbsent(name, body);
    return body;
  }

  private static Optional<byte[]> read(String name) {
    try (InputStream in = HttpFrontend.class.getClassLoader().getResourceAsStream(name)) {
      return in == null ? Optional.empty() : Optional.of(in.readAllBytes());
    } catch (IOException e) {
      throw new UncheckedIOException("cannot read " + name, e);
    }
  }

  private static Publisher<Void> send(HttpServerResponse response, byte[] body, String type) {
    return response
        .header(HttpHeaderNames.CONTENT_TYPE, type)
        .header(HttpHeaderNames.CACHE_CONTROL, "no-cache")
        .header("X-Content-Type-Options", "nosniff")
        .header(HttpHeaderNames.CONTENT_LENGTH, Integer.toString(body.length))
        .sendByteArray(Mono.just(body));
  }

  private static Publisher<Void> notFound(HttpServerResponse response) {
    return response
        .status(HttpResponseStatus.NOT_FOUND)
        .header(HttpHeaderNames.CONTENT_TYPE, "text/plain; charset=utf-8")
        .sendString(Mono.just("not found\n"), StandardCharsets.UTF_8);
  }
}
