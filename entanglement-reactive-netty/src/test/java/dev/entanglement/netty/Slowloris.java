package dev.entanglement.netty;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.time.Duration;

/**
 * A raw client that connects and then sends {@code drip} one byte per {@code pace}, or nothing,
 * until the server closes the connection. The pace is a bounded read: the client waits for the
 * server's answer for one pace before it sends the next byte, so no sleep is needed.
 */
final class Slowloris {
  /** What happened: how long the server kept the connection, and how many bytes were sent. */
  record Closed(Duration after, int bytesSent) {}

  private Slowloris() {}

  /**
   * Connects to 127.0.0.1:{@code port}, drips {@code drip}, and returns when the server closes.
   *
   * @throws AssertionError if the server keeps the connection longer than {@code max}
   */
  static Closed until(int port, byte[] drip, Duration pace, Duration max) {
    long start = System.nanoTime();
    int sent = 0;
    try (Socket s = new Socket("127.0.0.1", port)) {
      s.setSoTimeout((int) pace.toMillis());
      InputStream in = s.getInputStream();
      OutputStream out = s.getOutputStream();
      byte[] sink = new byte[4096];
      while (System.nanoTime() - start < max.toNanos()) {
        try {
          if (in.read(sink) < 0) {
            return new Closed(Duration.ofNanos(System.nanoTime() - start), sent);
          }
        } catch (SocketTimeoutException paced) {
          if (sent < drip.length) {
            out.write(drip[sent++]);
            out.flush();
          }
        } catch (SocketException reset) {
          return new Closed(Duration.ofNanos(System.nanoTime() - start), sent);
        }
      }
      throw new AssertionError("the server kept a slow connection for more than " + max);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
