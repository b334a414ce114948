package dev.entanglement.netty;

import dev.entanglement.PeerId;
import dev.entanglement.protocol.MessageType;
import dev.entanglement.transport.Link;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.MonoSink;

/**
 * A dialled link whose peer has shown that it admitted the connection: its first frame, read
 * before the link is handed to the node, was a HELLO (a peer that refuses a connection after the
 * handshake sends an ERROR and closes it, and a node's first frame on a link it keeps is always its
 * HELLO). The link delivers that frame again, first, then the rest, with the subscriber's demand
 * passed on: one frame is read ahead, no more.
 *
 * <p>Used where attaching a connection the peer then refuses would cost a working one: the node
 * replaces its link to a peer when it attaches a new one ({@link TcpClientTransport#attachDialled}).
 *
 * <p>States of the reader: {@code PEEKING} (one frame requested, no subscriber) → {@code HANDED}
 * (the first frame was a HELLO; waiting for the subscriber of what follows it in {@link
 * #receive()}, with the link's completion remembered if it comes first) → {@code RELAYING} (frames
 * go to that subscriber as it asks; nothing is requested before it subscribed). A first frame
 * other than a HELLO, or the link closing first, ends {@code PEEKING} with no link. The reader's
 * lock guards the hand-overs between the link's thread and the subscriber's, and is never held
 * while calling out; a completion reaches the subscriber only after its {@code onSubscribe}.
 */
final class AdmittedLink implements Link {
  private final Link link;
  private final byte[] hello;
  private final Reader reader;

  private AdmittedLink(Link link, byte[] hello, Reader reader) {
    this.link = link;
    this.hello = hello;
    this.reader = reader;
  }

  /**
   * Reads {@code link}'s first frame: the link that delivers it again if it is a HELLO; empty if
   * the first frame is anything else or the link closes first (the link is then closed). Cancelling
   * closes the link.
   */
  static Mono<Link> afterHello(Link link) {
    return Mono.create(result -> {
      Reader reader = new Reader(link, result);
      result.onCancel(() -> {
        reader.dispose();
        link.dispose();
      });
      link.receive().subscribe(reader);
    });
  }

  @Override
  public PeerId remote() {
    return link.remote();
  }

  /** The HELLO, then the frames that follow it. One subscriber, as for every link. */
  @Override
  public Flux<byte[]> receive() {
    // The rest is subscribed to once the HELLO is delivered, with the demand left.
    Publisher<byte[]> rest = reader::relayTo;
    return Flux.concat(Mono.just(hello), rest);
  }

  @Override
  public Mono<Void> send(Publisher<byte[]> frames) {
    return link.send(frames);
  }

  @Override
  public Mono<Void> onClose() {
    return link.onClose();
  }

  @Override
  public void dispose() {
    link.dispose();
  }

  @Override
  public boolean isDisposed() {
    return link.isDisposed();
  }

  /** Subscribes to the dialled link's frames: the first for the check, the rest for the node. */
  private static final class Reader extends BaseSubscriber<byte[]> {
    private final Link link;
    private @Nullable MonoSink<Link> result;
    private @Nullable Subscriber<? super byte[]> downstream;
    /** Whether {@link #downstream}'s {@code onSubscribe} has returned: it may be completed. */
    private boolean subscribed;
    private boolean completed;

    Reader(Link link, MonoSink<Link> result) {
      this.link = link;
      this.result = result;
    }

    @Override
    protected void hookOnSubscribe(Subscription s) {
      s.request(1);
    }

    @Override
    protected void hookOnNext(byte[] frame) {
      MonoSink<Link> peeking;
      Subscriber<? super byte[]> to;
      synchronized (this) {
        peeking = result;
        result = null;
        to = downstream;
      }
      if (peeking != null) {
        if (frame.length > 0 && frame[0] == MessageType.HELLO.code()) {
          peeking.success(new AdmittedLink(link, frame, this));
        } else {
          dispose();
          link.dispose();
          peeking.success();
        }
      } else if (to != null) {
        to.onNext(frame); // asked for by it: nothing is requested before it subscribed
      }
    }

    @Override
    protected void hookOnComplete() {
      ended();
    }

    @Override
    protected void hookOnError(Throwable e) {
      ended(); // a link does not signal errors for a close (Link); ended either way
    }

    private void ended() {
      MonoSink<Link> peeking;
      Subscriber<? super byte[]> to;
      synchronized (this) {
        peeking = result;
        result = null;
        completed = true;
        to = subscribed ? downstream : null;
      }
      if (peeking != null) {
        peeking.success();
      } else if (to != null) {
        to.onComplete();
      }
    }

    /** The frames after the HELLO go to {@code to}, as it asks for them. */
    void relayTo(Subscriber<? super byte[]> to) {
      synchronized (this) {
        downstream = to;
      }
      to.onSubscribe(new Subscription() {
        @Override
        public void request(long n) {
          Reader.this.request(n);
        }

        @Override
        public void cancel() {
          Reader.this.dispose();
        }
      });
      boolean done;
      synchronized (this) {
        subscribed = true;
        done = completed;
      }
      if (done) {
        to.onComplete();
      }
    }
  }
}
