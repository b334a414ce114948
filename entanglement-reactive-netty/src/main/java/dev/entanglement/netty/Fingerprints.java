package dev.entanglement.netty;

import dev.entanglement.PeerId;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.cert.Certificate;
import java.security.cert.CertificateEncodingException;
import java.util.Base64;

/**
 * Peer identities from certificates: the SHA-256 of the DER encoding of the leaf certificate, in
 * RFC 6920 form {@code ni:///sha-256;<base64url with padding>}, as in the original Entanglement.
 */
public final class Fingerprints {
  private static final String PREFIX = "ni:///sha-256;";

  private Fingerprints() {}

  /** The identity of a certificate. */
  public static PeerId of(Certificate certificate) {
    try {
      return ofDer(certificate.getEncoded());
    } catch (CertificateEncodingException e) {
      throw new IllegalArgumentException("certificate cannot be encoded", e);
    }
  }

  /** The identity of a DER-encoded certificate. */
  public static PeerId ofDer(byte[] der) {
    try {
      byte[] digest = MessageDigest.getInstance("SHA-256").digest(der);
      return PeerId.of(PREFIX + Base64.getUrlEncoder().encodeToString(digest));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is not available", e);
    }
  }

  /**
   * Parses a fingerprint written as {@code ni:///sha-256;…}, {@code ni://authority/sha-256;…} or the
   * bare base64url digest.
   */
  public static PeerId parse(String text) {
    String digest = text;
    int i = text.indexOf("/sha-256;");
    if (text.startsWith("ni://") && i >= 0) {
      digest = text.substring(i + "/sha-256;".length());
    }
    byte[] raw = Base64.getUrlDecoder().decode(digest);
    if (raw.length != 32) {
      throw new IllegalArgumentException("not a SHA-256 fingerprint: " + text);
    }
    return PeerId.of(PREFIX + Base64.getUrlEncoder().encodeToString(raw));
  }
}
