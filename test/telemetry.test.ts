/** The kernel's Telemetry interface (`src/telemetry.ts`): the no-op implementation. */
import t from 'tap';
import { noTelemetry } from '../src/telemetry.js';

t.test('noTelemetry accepts every report and does nothing', async (t) => {
  t.equal(noTelemetry.jobFinished('prepare:psql', 'succeeded', 1), undefined);
  t.equal(noTelemetry.stepFinished('psql', 'cached', 0), undefined);
  t.equal(noTelemetry.cacheLookup(true), undefined);
});
