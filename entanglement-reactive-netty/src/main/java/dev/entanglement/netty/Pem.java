package dev.entanglement.netty;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.InvalidKeySpecException;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

/** Reads PEM certificates and unencrypted PKCS#8 private keys (RSA or EC). */
final class Pem {
  private Pem() {}

  static List<X509Certificate> certificates(File file) {
    try (InputStream in = Files.newInputStream(file.toPath())) {
      CertificateFactory cf = CertificateFactory.getInstance("X.509");
      List<X509Certificate> out = new ArrayList<>();
      for (var c : cf.generateCertificates(in)) {
        out.add((X509Certificate) c);
      }
      if (out.isEmpty()) {
        throw new IllegalArgumentException("no certificate in " + file);
      }
      return out;
    } catch (IOException | CertificateException e) {
      throw new IllegalArgumentException("unreadable certificate " + file + ": " + e.getMessage(), e);
    }
  }

  static PrivateKey privateKey(File file) {
    String text;
    try {
      text = Files.readString(file.toPath(), StandardCharsets.US_ASCII);
    } catch (IOException e) {
      throw new IllegalArgumentException("unreadable key " + file + ": " + e.getMessage(), e);
    }
    int begin = text.indexOf("-----BEGIN PRIVATE KEY-----");
    int end = text.indexOf("-----END PRIVATE KEY-----");
    if (begin < 0 || end < 0) {
      throw new IllegalArgumentException(file + " is not an unencrypted PKCS#8 PEM key");
    }
    byte[] der =
        Base64.getMimeDecoder().decode(text.substring(begin + "-----BEGIN PRIVATE KEY-----".length(), end));
    for (String alg : new String[] {"RSA", "EC"}) {
      try {
        return KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(der));
      } catch (InvalidKeySpecException | java.security.NoSuchAlgorithmException e) {
        // try the next algorithm
      }
    }
    throw new IllegalArgumentException(file + " holds neither an RSA nor an EC key");
  }
}
