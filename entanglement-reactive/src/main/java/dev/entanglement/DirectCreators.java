package dev.entanglement;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.reflect.Constructor;
import tools.jackson.core.Version;
import tools.jackson.databind.BeanDescription;
import tools.jackson.databind.DeserializationConfig;
import tools.jackson.databind.DeserializationContext;
import tools.jackson.databind.JacksonModule;
import tools.jackson.databind.deser.ValueInstantiator;
import tools.jackson.databind.deser.ValueInstantiators;
import tools.jackson.databind.deser.std.StdValueInstantiator;
import tools.jackson.databind.introspect.AnnotatedConstructor;

/**
 * A Jackson module that calls property-based constructors — a record's canonical constructor, a
 * class's multi-argument {@code @JsonCreator} constructor — through a method handle built once per
 * type, instead of Jackson's per-call {@code MethodHandle.invokeWithArguments}, which builds a
 * method type and a spreading adapter on every object it creates (about 200 B of garbage per value,
 * docs/BENCHMARKS.md §10). The engine binds every state it receives, every proposal it merges and
 * every RESPONSE it reads this way.
 *
 * <p>Only Jackson's standard instantiator with a constructor creator is replaced, and it keeps
 * everything else of it (the creator's properties, defaults, delegates); any other instantiator,
 * a static factory creator, or a constructor this class may not access is left as Jackson built
 * it. An exception from the constructor is reported exactly as Jackson reports it.
 */
final class DirectCreators extends JacksonModule {
  @Override
  public String getModuleName() {
    return "entanglement-direct-creators";
  }

  @Override
  public Version version() {
    return Version.unknownVersion();
  }

  @Override
  public void setupModule(SetupContext context) {
    context.addValueInstantiators(
        new ValueInstantiators.Base() {
          @Override
          public ValueInstantiator modifyValueInstantiator(
              DeserializationConfig config, BeanDescription.Supplier bean, ValueInstantiator found) {
            return direct(found);
          }
        });
  }

  /** {@code found} with its constructor called directly, or {@code found} itself. */
  static ValueInstantiator direct(ValueInstantiator found) {
    if (found.getClass() != StdValueInstantiator.class || !found.canCreateFromObjectWith()) {
      return found;
    }
    StdValueInstantiator std = (StdValueInstantiator) found;
    if (!(std.getWithArgsCreator() instanceof AnnotatedConstructor creator)) {
      return found;
    }
    Constructor<?> constructor = creator.getAnnotated();
    try {
      MethodHandle spread =
          MethodHandles.lookup()
              .unreflectConstructor(constructor)
              .asFixedArity() // a varargs constructor takes its array as one argument, as Jackson passes it
              .asSpreader(Object[].class, constructor.getParameterCount())
              .asType(MethodType.methodType(Object.class, Object[].class));
      return new Direct(std, spread);
    } catch (IllegalAccessException | RuntimeException notAccessible) {
      return found; // Jackson's own call still works where it can make the constructor accessible
    }
  }

  /** Jackson's instantiator, with its arguments creator invoked through {@code spread}. */
  private static final class Direct extends StdValueInstantiator {
    private final MethodHandle spread;

    Direct(StdValueInstantiator src, MethodHandle spread) {
      super(src);
      this.spread = spread;
    }

    @Override
    public Object createFromObjectWith(DeserializationContext ctxt, Object[] args) {
      try {
        return (Object) spread.invokeExact(args);
      } catch (Error e) {
        throw e;
      } catch (Throwable t) { // as StdValueInstantiator reports a failed creator
        return ctxt.handleInstantiationProblem(getValueClass(), args, rewrapCtorProblem(ctxt, t));
      }
    }
  }
}
