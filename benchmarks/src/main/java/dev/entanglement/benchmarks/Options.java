package dev.entanglement.benchmarks;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * {@code name=value} command-line options of the end-to-end harnesses, with defaults. Unknown names
 * are refused, so that a typo does not silently run the default configuration.
 */
final class Options {
  private final Map<String, String> values = new LinkedHashMap<>();
  private final Set<String> known;

  private Options(Set<String> known) {
    this.known = known;
  }

  /** Parses {@code args}; {@code known} lists every accepted name. */
  static Options parse(String[] args, String... known) {
    Options o = new Options(Set.of(known));
    for (String a : args) {
      String s = a.startsWith("--") ? a.substring(2) : a;
      int eq = s.indexOf('=');
      if (eq <= 0) {
        throw new IllegalArgumentException("expected name=value, got '" + a + "'");
      }
      String name = s.substring(0, eq);
      if (!o.known.contains(name)) {
        throw new IllegalArgumentException(
            "unknown option '" + name + "'; known: " + String.join(", ", List.of(known)));
      }
      o.values.put(name, s.substring(eq + 1));
    }
    return o;
  }

  String string(String name, String def) {
    return values.getOrDefault(name, def);
  }

  int integer(String name, int def) {
    String v = values.get(name);
    return v == null ? def : Integer.parseInt(v.replace("_", ""));
  }

  long longValue(String name, long def) {
    String v = values.get(name);
    return v == null ? def : Long.parseLong(v.replace("_", ""));
  }

  double decimal(String name, double def) {
    String v = values.get(name);
    return v == null ? def : Double.parseDouble(v.replace("_", ""));
  }

  /** A duration in seconds: a number of seconds, or a number followed by {@code s}, {@code m} or {@code h}. */
  double seconds(String name, double def) {
    String v = values.get(name);
    if (v == null) {
      return def;
    }
    v = v.replace("_", "");
    double unit =
        switch (v.charAt(v.length() - 1)) {
          case 'h' -> 3600;
          case 'm' -> 60;
          case 's' -> 1;
          default -> 0;
        };
    return unit == 0 ? Double.parseDouble(v) : Double.parseDouble(v.substring(0, v.length() - 1)) * unit;
  }

  boolean bool(String name, boolean def) {
    String v = values.get(name);
    return v == null ? def : Boolean.parseBoolean(v);
  }

  List<String> list(String name, String def) {
    return List.of(string(name, def).split(","));
  }

  @Override
  public String toString() {
    return values.toString();
  }
}
