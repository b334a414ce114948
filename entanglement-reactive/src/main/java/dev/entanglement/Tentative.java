package dev.entanglement;

import org.jspecify.annotations.Nullable;

/**
 * One signal of a transition's tentative stream: an update ({@link TransitionState#ACTIVE}) with
 * the speculative value, or exactly one terminal signal. Tentative values never appear in {@link
 * EntanglementNode#watch}.
 *
 * @param key the object
 * @param transitionId the transition's id
 * @param origin the node id of the originator
 * @param state {@code ACTIVE} for an update, otherwise the terminal state
 * @param value the speculative value (the committed state with the transition's attributes merged
 *     in); {@code null} for terminal signals
 */
public record Tentative<T>(
    ObjectKey key,
    String transitionId,
    String origin,
    TransitionState state,
    @Nullable T value) {}
