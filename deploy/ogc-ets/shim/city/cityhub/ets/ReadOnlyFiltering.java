package city.cityhub.ets;

import org.opengis.cite.sta10.SuiteAttribute;
import org.opengis.cite.sta10.filteringExtension.Capability3Tests;
import org.testng.ITestContext;
import org.testng.annotations.BeforeClass;

/**
 * The suite's filtering extension tests against a read-only service: every test method and
 * assertion of Capability3Tests runs unchanged, on the data the service already holds. Only
 * the class's fixture is replaced (SkipWriteFixture disables it): it creates its entities
 * with POST and PATCH and deletes everything with DELETE afterwards, which a read-only
 * service refuses, and then TestNG skips every test of the class.
 */
public class ReadOnlyFiltering extends Capability3Tests {

	@BeforeClass
	public void serviceRoot(ITestContext testContext) {
		String root = testContext.getSuite().getAttribute(SuiteAttribute.TEST_SUBJECT.getName()).toString().trim();
		rootUri = root.endsWith("/") ? root.substring(0, root.length() - 1) : root;
	}

}
