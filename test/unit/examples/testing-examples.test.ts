// Runs the Node test runner example of celeriac/testing (runtime/examples/testing/signup.node-test.ts)
// as part of the unit tier, so the documented example keeps working.
import '../../../runtime/examples/testing/signup.node-test.js';
