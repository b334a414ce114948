package dev.entanglement.protocol;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import org.junit.jupiter.api.Test;

/** The wire codec is a layer of its own: no Reactor, no transport, no engine. */
class LayeringTest {
  private static final JavaClasses CORE =
      new ClassFileImporter()
          .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
          .importPackages("dev.entanglement");

  @Test
  void codecDependsOnNeitherReactorNorNettyNorTheEngine() {
    noClasses()
        .that()
        .resideInAPackage("dev.entanglement.protocol..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage(
            "reactor..", "org.reactivestreams..", "io.netty..", "dev.entanglement", "dev.entanglement.transport..")
        .check(CORE);
  }

  @Test
  void transportSpiDoesNotReachIntoTheEngine() {
    noClasses()
        .that()
        .resideInAPackage("dev.entanglement.transport..")
        .should()
        .dependOnClassesThat()
        .haveSimpleNameStartingWith("Engine")
        .check(CORE);
  }
}
