/**
 * OpenTelemetry metrics: a MeterProvider that throws.
 *
 * docs/opentelemetry.md promises "nothing throws" and "recording never
 * delays an answer"; metrics are a side channel, so a broken or incompatible provider (the common
 * case: an OTel SDK older than @opentelemetry/api 1.9, whose Meter has no `createGauge`; or an
 * exporter wrapper that throws in `getMeter`) may lose metrics, but must never take the process
 * down. Each source is run in a process of its own, as a user runs it, with plain Node (the
 * sources through tsx, as `npm start` runs them).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A provider whose meters lack createGauge (an OTel SDK before API 1.9), registered globally. */
const BROKEN_PROVIDER = `
import { metrics } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
const real = new MeterProvider();
metrics.setGlobalMeterProvider({
  getMeter(...args) {
    const m = real.getMeter(...args);
    return { createCounter: m.createCounter.bind(m), createHistogram: m.createHistogram.bind(m),
      createUpDownCounter: m.createUpDownCounter.bind(m) };
  },
});
`;

function run(script: string) {
  const child = spawnSync(
    process.execPath,
    [
      '--conditions=sluice-source',
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      BROKEN_PROVIDER + script,
    ],
    {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' },
    },
  );
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

const SURVIVED = 'still running';

describe('a broken MeterProvider never crashes the process', () => {
  it('the SDK: an acquire answered, then the process keeps running', () => {
    const { status, stdout, stderr } = run(`
import { SluiceClient } from '@sluice/client';
const fetch = async () => new Response(JSON.stringify({ allowed: true, lease_id: 'l.s', wait_ms: 0, limits: [] }),
  { status: 200, headers: { 'content-type': 'application/json' } });
const sdk = new SluiceClient({ endpoint: 'http://localhost:1', fetch, retries: 0 });
await sdk.acquire({ entity: 'e', resource: 'm', usage: {} });
await new Promise((resolve) => setTimeout(resolve, 500));
console.log('${SURVIVED}');
`);
    expect(stderr).not.toMatch(/TypeError/);
    expect(stdout).toContain(SURVIVED);
    expect(status).toBe(0);
  });

  it('the handlers: a decision answered at the edge, then the Lambda runtime keeps running', () => {
    const { status, stdout, stderr } = run(`
import { decisionAnswered } from '@sluice/lambdas/telemetry';
decisionAnswered({ entity: 'e', resource: 'm' }, 200, undefined, performance.now());
await new Promise((resolve) => setTimeout(resolve, 500));
console.log('${SURVIVED}');
`);
    expect(stderr).not.toMatch(/TypeError/);
    expect(stdout).toContain(SURVIVED);
    expect(status).toBe(0);
  });

  it('npm start: a route answered, then the local server keeps serving', () => {
    const { status, stdout, stderr } = run(`
import { startLocalServer } from '@sluice/local';
// getMeter itself throws (\`metrics\` is imported above).
metrics.disable();
metrics.setGlobalMeterProvider({ getMeter() { throw new Error('exporter misconfigured'); } });
const entry = new URL('data:text/javascript,export const handler = async () => ({ statusCode: 200, body: "{}" });');
const server = await startLocalServer({ routes: [{ method: 'GET', path: '/x', function: 'health', operation: 'x',
  auth: 'client', entry, summary: 'x', response: {} }] });
const first = await fetch(server.url + '/x');
await new Promise((resolve) => setTimeout(resolve, 500));
const second = await fetch(server.url + '/x');
console.log('${SURVIVED}', first.status, second.status);
await server.close();
`);
    expect(stderr).not.toMatch(/exporter misconfigured/);
    expect(stderr).not.toMatch(/SyntaxError/); // the script itself runs
    expect(stdout).toContain(`${SURVIVED} 200 200`);
    expect(status).toBe(0);
  });
});
