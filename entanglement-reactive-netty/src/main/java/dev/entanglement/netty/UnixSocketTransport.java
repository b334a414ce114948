package dev.entanglement.netty;

import dev.entanglement.EntanglementNode;
import dev.entanglement.PeerId;
import dev.entanglement.transport.Link;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.channel.unix.PeerCredentials;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Mono;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.tcp.TcpClient;
import reactor.netty.tcp.TcpServer;

/**
 * Unix domain sockets (Linux, native epoll). The peer's identity is its credentials as the kernel
 * reports them, {@code unix:uid=<uid>,gid=<gid>}; the server admits a peer through a hook, which
 * refuses by default. Filesystem permissions on the socket are the first line of defence.
 */
public final class UnixSocketTransport {
  private static final Logger log = LoggerFactory.getLogger(UnixSocketTransport.class);

  private UnixSocketTransport() {}

  /** True where Unix domain sockets can be used (native epoll is loaded). */
  public static boolean isAvailable() {
    return Epoll.isAvailable();
  }

  /** Why Unix domain sockets are unavailable here, or {@code null}. */
  public static String unavailabilityCause() {
    Throwable t = Epoll.unavailabilityCause();
    return t == null ? null : t.toString();
  }

  /** The identity of a local peer with these credentials. */
  public static PeerId identity(int uid, int gid) {
    return PeerId.of("unix:uid=" + uid + ",gid=" + gid);
  }

  /**
   * Listens on {@code path} (an existing socket file is replaced) and attaches each admitted
   * connection to {@code node}.
   */
  public static Mono<DisposableServer> serve(
      EntanglementNode node, Path path, Function<PeerId, Mono<Boolean>> admit) {
    requireAvailable();
    Objects.requireNonNull(admit);
    return Mono.fromCallable(() -> java.nio.file.Files.deleteIfExists(path))
        .onErrorMap(IOException.class, e -> new IllegalStateException("cannot replace " + path, e))
        .then(
            TcpServer.create()
                .bindAddress(() -> new DomainSocketAddress(path.toFile()))
                .doOnConnection(c -> c.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(Framing.DEFAULT_MAX_FRAME)))
                .handle(
                    (in, out) -> {
                      Connection[] c = new Connection[1];
                      in.withConnection(x -> c[0] = x);
                      PeerId peer = credentials(c[0]);
                      // A hook that fails refuses, as on the other transports.
                      return Mono.defer(() -> admit.apply(peer))
                          .defaultIfEmpty(false)
                          .onErrorReturn(false)
                          .flatMap(
                              ok -> {
                                if (!ok) {
                                  return TcpServerTransport.refuse(c[0], "unix peer " + peer);
                                }
                                return node.attach(NettyLink.stream(c[0], peer, 0));
                              });
                    })
                .bind()
                .map(s -> (DisposableServer) s));
  }

  /** Connects to {@code path}; the server's identity is its credentials. */
  public static Mono<Link> connect(Path path) {
    requireAvailable();
    return TcpClient.create()
        .remoteAddress(() -> new DomainSocketAddress(path.toFile()))
        .doOnConnected(c -> c.addHandlerLast(FrameDecoder.NAME, new FrameDecoder(Framing.DEFAULT_MAX_FRAME)))
        .connect()
        .flatMap(c -> {
          try {
            return Mono.<Link>just(NettyLink.stream(c, credentials(c), 0));
          } catch (RuntimeException e) {
            c.dispose();
            return Mono.error(e);
          }
        });
  }

  private static PeerId credentials(Connection c) {
    try {
      PeerCredentials pc = ((EpollDomainSocketChannel) c.channel()).peerCredentials();
      return identity(pc.uid(), pc.gids().length > 0 ? pc.gids()[0] : -1);
    } catch (IOException e) {
      throw new IllegalStateException("no peer credentials on a unix socket", e);
    }
  }

  private static void requireAvailable() {
    if (!isAvailable()) {
      throw new UnsupportedOperationException(
          "Unix domain sockets need native epoll: " + unavailabilityCause());
    }
  }
}
