/**
 * `npm run soak` — Sluice under faults for a bounded time, on 127.0.0.1 only: DynamoDB Local
 * paused, killed and restarted, throttled, failing and dropping answers; one server killed
 * mid-request; limits, budgets and the signing key changed while clients call. Then a table of
 * checks (over-admission, leases, quota totals, usage history, alerts, 5xx, deadlines).
 *
 *   npm run -s soak                    180 s
 *   npm run -s soak -- --seconds 60    a shorter schedule, the same phases
 *   npm run -s soak -- --tamper double  the checks on a falsified record: they must fail
 *
 * Exits 1 when a check fails, 2 on bad arguments, 130 when interrupted; every child process it
 * started is stopped first (a second Ctrl-C kills them at once).
 */
import { parseArgs } from 'node:util';
import { runSoak } from './harness.js';
import { childrenAlive, killAllChildren } from './processes.js';
import { renderReport } from './report.js';
import { TAMPERING } from './tamper.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '180' },
    users: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
    tamper: { type: 'string' },
  },
});
const tamper = values.tamper === undefined ? undefined : TAMPERING[values.tamper];
if (values.tamper !== undefined && !tamper) {
  console.error(`--tamper must be one of ${Object.keys(TAMPERING).join(', ')}`);
  process.exit(2);
}
const seconds = Number(values.seconds);
const users = Number(values.users);
const seed = Number(values.seed);
if (
  !(seconds >= 20 && seconds <= 3_600) ||
  !(Number.isInteger(users) && users > 0 && users <= 64)
) {
  console.error('--seconds must be in [20, 3600] and --users an integer in [1, 64]');
  process.exit(2);
}

const controller = new AbortController();
let interrupted = false;
let firstSignalMs = 0;
const onSignal = (name: NodeJS.Signals) => {
  if (interrupted) {
    // One Ctrl-C can arrive twice (from the terminal, and relayed by the tsx wrapper).
    if (Date.now() - firstSignalMs < 1_000) return;
    killAllChildren();
    process.exit(130);
  }
  interrupted = true;
  firstSignalMs = Date.now();
  console.error(`\n${name}: stopping (again to kill at once)`);
  controller.abort();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  const report = await runSoak({
    seconds,
    users,
    seed,
    signal: controller.signal,
    log: (line) => console.error(line),
    ...(tamper ? { tamper } : {}),
  });
  console.log(renderReport(report));
  const left = childrenAlive();
  console.log(
    `child processes left running: ${left.length}${left.length ? ` (${left.join(', ')})` : ''}`,
  );
  process.exitCode = report.ok && left.length === 0 ? 0 : 1;
} catch (error) {
  if (interrupted) {
    console.error('interrupted; every child process stopped');
    process.exitCode = 130;
  } else {
    console.error(error);
    process.exitCode = 1;
  }
} finally {
  killAllChildren();
}
// Whatever a failed or interrupted run left pending (a client's request, a timer) ends here.
process.exit();
