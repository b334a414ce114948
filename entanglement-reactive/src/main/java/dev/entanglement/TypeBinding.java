package dev.entanglement;

/** A type together with the registry that declared it. */
record TypeBinding<T>(SyncType<T> type, Registry registry) {
  int priority() {
    return type.priority();
  }
}
