package dev.entanglement.samples.cli;

import dev.entanglement.PeerId;
import dev.entanglement.netty.Fingerprints;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** A peer to dial, as {@code FINGERPRINT@HOST:PORT}: who it must be, and where it is. */
record PeerAddress(PeerId fingerprint, HostPort address) {
  static PeerAddress parse(String text) {
    int at = text.lastIndexOf('@');
    if (at <= 0 || at == text.length() - 1) {
      throw new TypeConversionException(
          "expected FINGERPRINT@HOST:PORT (e.g. ni:///sha-256;…@127.0.0.1:7000), got '" + text + "'");
    }
    return new PeerAddress(fingerprint(text.substring(0, at)), HostPort.parse(text.substring(at + 1)));
  }

  /** Parses a fingerprint, {@code ni:///sha-256;…} or the bare base64url digest. */
  static PeerId fingerprint(String text) {
    try {
      return Fingerprints.parse(text);
    } catch (IllegalArgumentException e) {
      throw new TypeConversionException(
          "not a SHA-256 certificate fingerprint (ni:///sha-256;…): '" + text + "'");
    }
  }

  @Override
  public String toString() {
    return fingerprint + "@" + address;
  }

  /** The picocli converter for {@code --connect}. */
  static final class Converter implements ITypeConverter<PeerAddress> {
    @Override
    public PeerAddress convert(String value) {
      return parse(value);
    }
  }

  /** The picocli converter for a bare fingerprint ({@code --allow}). */
  static final class FingerprintConverter implements ITypeConverter<PeerId> {
    @Override
    public PeerId convert(String value) {
      return fingerprint(value);
    }
  }
}
