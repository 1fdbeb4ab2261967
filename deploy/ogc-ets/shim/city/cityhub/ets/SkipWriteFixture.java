package city.cityhub.ets;

import java.lang.reflect.Constructor;
import java.lang.reflect.Method;

import org.opengis.cite.sta10.filteringExtension.Capability3Tests;
import org.testng.IAnnotationTransformer;
import org.testng.annotations.IConfigurationAnnotation;

/**
 * Disables the two configuration methods of Capability3Tests that write: the fixture that
 * POSTs its entities (obtainTestSubject, which calls createEntities) and the clean-up that
 * DELETEs every entity of the service (deleteEverythings). Nothing else is changed.
 */
public class SkipWriteFixture implements IAnnotationTransformer {

	@Override
	public void transform(IConfigurationAnnotation annotation, Class testClass, Constructor testConstructor,
			Method testMethod) {
		if (testMethod != null && testMethod.getDeclaringClass() == Capability3Tests.class
				&& (testMethod.getName().equals("obtainTestSubject")
						|| testMethod.getName().equals("deleteEverythings"))) {
			annotation.setEnabled(false);
		}
	}

}
