package dev.entanglement.netty;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.security.cert.CertificateParsingException;
import java.security.cert.X509Certificate;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/**
 * Checks a server certificate against the host name the client meant to reach (RFC 6125: subject
 * alternative names only; a DNS wildcard matches exactly one leftmost label). Done after the
 * handshake, the same way whatever the TLS provider.
 */
final class HostNames {
  private static final int DNS = 2;
  private static final int IP = 7;

  private HostNames() {}

  static boolean matches(X509Certificate cert, String host) {
    Collection<List<?>> names;
    try {
      names = cert.getSubjectAlternativeNames();
    } catch (CertificateParsingException e) {
      return false;
    }
    if (names == null) {
      return false;
    }
    boolean literal = isIpLiteral(host);
    for (List<?> n : names) {
      int type = (Integer) n.get(0);
      String value = String.valueOf(n.get(1));
      if (literal && type == IP && sameAddress(value, host)) {
        return true;
      }
      if (!literal && type == DNS && dnsMatches(value, host)) {
        return true;
      }
    }
    return false;
  }

  private static boolean isIpLiteral(String host) {
    return host.indexOf(':') >= 0 || host.chars().allMatch(c -> c == '.' || Character.isDigit(c));
  }

  private static boolean sameAddress(String a, String b) {
    try {
      return InetAddress.getByName(a).equals(InetAddress.getByName(b));
    } catch (UnknownHostException e) {
      return false;
    }
  }

  private static boolean dnsMatches(String pattern, String host) {
    String p = pattern.toLowerCase(Locale.ROOT);
    String h = host.toLowerCase(Locale.ROOT);
    if (p.startsWith("*.")) {
      int dot = h.indexOf('.');
      return dot > 0 && h.substring(dot).equals(p.substring(1));
    }
    return p.equals(h);
  }
}
