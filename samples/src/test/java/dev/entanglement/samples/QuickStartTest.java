package dev.entanglement.samples;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class QuickStartTest {
  @Test
  void readmeExampleRuns() {
    assertEquals(new QuickStart.Cursor("alice", 10, 20), QuickStart.run().value());
  }
}
