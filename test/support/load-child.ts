/**
 * The child side of load-process.ts: the first message is the LoadOptions (answered
 * `started`), the second stops the load (answered with the report), then it exits.
 */
import { startLoad, type LoadOptions } from './load.js';

// The test process is gone: nobody will read the report.
process.on('disconnect', () => process.exit(1));
process.once('message', (o: LoadOptions) => {
  const run = startLoad(o);
  process.send!('started');
  process.once('message', () => {
    void run.stop().then((report) => process.send!(report, () => process.exit(0)));
  });
});
