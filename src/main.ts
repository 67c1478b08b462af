/** `sqlrs-engine` command line: parse flags, start the engine, stop on signals or idle. */
import { parseFlags, USAGE } from './flags.js';
import { Engine, exitCodeFor } from './engine.js';
import { errorText } from './errors.js';
import { logRotationFromEnv } from './logging.js';

export async function cli(argv: string[]): Promise<void> {
  let flags;
  try {
    const parsed = parseFlags(argv);
    if (parsed === 'help') { process.stdout.write(USAGE); process.exit(0); }
    flags = parsed;
  } catch (e) {
    process.stderr.write(`sqlrs-engine: ${errorText(e)}\n${USAGE}`);
    process.exit(exitCodeFor(e));
  }
  const stateStore = (process.env['SQLRS_STATE_STORE'] ?? '').trim();
  let logRotation;
  try {
    logRotation = logRotationFromEnv(process.env);
  } catch (e) {
    process.stderr.write(`sqlrs-engine: ${errorText(e)}\n`);
    process.exit(1);
  }
  const engine = new Engine({ flags, ...(stateStore ? { stateStore } : {}), logRotation, logToStderr: process.stderr.isTTY === true });
  // Handlers go in first: engine.json appears before start-up finishes, so a signal may arrive
  // while it is still under way; shutdown then waits for start() to settle.
  let signalled = false;
  let starting: Promise<void> = Promise.resolve();
  const onSignal = (sig: string): void => {
    if (signalled) return;
    signalled = true;
    void starting.catch(() => {}).then(() => {
      engine.log.info('signal received; shutting down', { signal: sig });
      return engine.close();
    });
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  try {
    starting = engine.start();
    await starting;
  } catch (e) {
    process.stderr.write(`sqlrs-engine: ${errorText(e)}\n`);
    process.exit(exitCodeFor(e));
  }
  await engine.stopped;
  process.exit(0);
}
