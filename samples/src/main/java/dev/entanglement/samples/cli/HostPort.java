package dev.entanglement.samples.cli;

import java.util.regex.Matcher;
import java.util.regex.Pattern;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * A host and a port as written on the command line: {@code host:port}, or {@code [v6]:port} for an
 * IPv6 literal. Port 0 asks for an ephemeral port when binding.
 */
record HostPort(String host, int port) {
  private static final Pattern FORM = Pattern.compile("(?:\\[([0-9A-Fa-f:.]+)]|([^:\\[\\]/@\\s]+)):(\\d{1,5})");

  static HostPort parse(String text) {
    Matcher m = FORM.matcher(text);
    if (!m.matches()) {
      throw new TypeConversionException("expected HOST:PORT (or [IPv6]:PORT), got '" + text + "'");
    }
    int port = Integer.parseInt(m.group(3));
    if (port > 65535) {
      throw new TypeConversionException("port out of range (0-65535): " + port);
    }
    return new HostPort(m.group(1) != null ? m.group(1) : m.group(2), port);
  }

  /** The same host with another port (the one actually bound). */
  HostPort withPort(int actual) {
    return new HostPort(host, actual);
  }

  /** True for 0.0.0.0 and ::, which bind every interface. */
  boolean isWildcard() {
    return host.equals("0.0.0.0") || host.equals("::") || host.equals("0:0:0:0:0:0:0:0");
  }

  @Override
  public String toString() {
    return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
  }

  /** The picocli converter. */
  static final class Converter implements ITypeConverter<HostPort> {
    @Override
    public HostPort convert(String value) {
      return parse(value);
    }
  }
}
