package dev.entanglement.samples.webflux;

import com.fasterxml.jackson.annotation.JsonInclude;
import dev.entanglement.ErrorCode;
import dev.entanglement.Outcome;
import org.jspecify.annotations.Nullable;

/**
 * The answer to {@code POST /shapes/{id}} as JSON: {@code {"committed":true,"state":{...}}} or
 * {@code {"committed":false,"code":"...","message":"..."}}.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
record ProposalAnswer(
    boolean committed, @Nullable ShapeEvent state, @Nullable String code, @Nullable String message) {

  static ProposalAnswer of(Outcome<Shape> outcome) {
    if (outcome instanceof Outcome.Committed<Shape> c) {
      return new ProposalAnswer(true, ShapeEvent.of(c.snapshot()), null, null);
    }
    Outcome.Rejected<Shape> r = (Outcome.Rejected<Shape>) outcome;
    return failed(r.code(), r.message());
  }

  static ProposalAnswer failed(ErrorCode code, String message) {
    return new ProposalAnswer(false, null, code.wire(), message);
  }
}
