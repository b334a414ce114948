package dev.entanglement;

import java.util.Collection;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.function.Consumer;
import org.jspecify.annotations.Nullable;

/**
 * A coherent schema: types, the policy that governs them, and the decision applied to proposals
 * that no {@link EntanglementNode#proposals} subscriber takes. A node may hold several registries; a
 * type name may appear in only one of them.
 *
 * <p>Defaults: {@link Policy#ALLOW_ALL}; the default decision commits every proposal as proposed.
 */
public final class Registry {
  private final String name;
  private final Map<String, SyncType<?>> types;
  private final Policy policy;
  private final Consumer<Proposal<?>> defaultDecision;

  private Registry(Builder b) {
    this.name = b.name;
    this.types = Collections.unmodifiableMap(new LinkedHashMap<>(b.types));
    this.policy = b.policy;
    this.defaultDecision = b.defaultDecision;
  }

  public static Builder builder(String name) {
    return new Builder(name);
  }

  public String name() {
    return name;
  }

  public Collection<SyncType<?>> types() {
    return types.values();
  }

  public @Nullable SyncType<?> type(String wireName) {
    return types.get(wireName);
  }

  public Policy policy() {
    return policy;
  }

  public Consumer<Proposal<?>> defaultDecision() {
    return defaultDecision;
  }

  @Override
  public String toString() {
    return "Registry[" + name + ", " + types.keySet() + "]";
  }

  /** Builds a {@link Registry}. Not thread-safe; use once. */
  public static final class Builder {
    private final String name;
    private final Map<String, SyncType<?>> types = new LinkedHashMap<>();
    private Policy policy = Policy.ALLOW_ALL;
    private Consumer<Proposal<?>> defaultDecision = Proposal::commit;

    private Builder(String name) {
      this.name = Objects.requireNonNull(name, "name");
    }

    /**
     * Adds a type.
     *
     * @throws IllegalArgumentException if a type with the same wire name is already registered
     */
    public Builder type(SyncType<?> type) {
      SyncType<?> previous = types.putIfAbsent(type.name(), type);
      if (previous != null) {
        throw new IllegalArgumentException(
            "type '" + type.name() + "' is registered twice in registry '" + name + "'");
      }
      return this;
    }

    /** The registry-level policy. Default: {@link Policy#ALLOW_ALL}. */
    public Builder policy(Policy policy) {
      this.policy = Objects.requireNonNull(policy, "policy");
      return this;
    }

    /**
     * Decides the proposals of a type while no subscriber of {@link EntanglementNode#proposals} is
     * registered for it (with one registered, they wait for it). Called on the node's thread: it
     * must not block. A decision made during the call takes effect when the call returns. Default:
     * commit as proposed. A proposal left undecided is rejected with {@link ErrorCode#TIMEOUT}.
     */
    public Builder defaultDecision(Consumer<Proposal<?>> decision) {
      this.defaultDecision = Objects.requireNonNull(decision, "decision");
      return this;
    }

    public Registry build() {
      return new Registry(this);
    }
  }
}
