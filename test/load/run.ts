/**
 * `npm run load` — a bounded load test of the local API exactly as `npm start` runs it (its own
 * DynamoDB Local, on 127.0.0.1), with the mix an LLM platform sends: streamed calls (acquire,
 * three adjusts, release), plain calls, failed calls (release with no usage), and callers of a
 * throttled key that are refused. It runs for a fixed time, then checks conservation exactly:
 * every key's and the org's daily token quota stands at its limit less what the answers say
 * was settled, to the token.
 *
 *   npm run -s load                          10 s warm-up, then 20 s measured, 16 clients
 *   npm run -s load -- --seconds 60 --clients 64 --json
 *
 * Exits non-zero on any error (a refusal of the throttled key is not one) or any unit missing.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { spawnLocalServer } from '../support/spawn.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    'warm-up': { type: 'string', default: '10' },
    clients: { type: 'string', default: '16' },
    json: { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const warmUp = Number(values['warm-up']);
if (
  !(seconds > 0 && seconds <= 600) ||
  !(Number.isInteger(clients) && clients > 0 && clients <= 512)
)
  throw new Error('--seconds must be in (0, 600] and --clients an integer in [1, 512]');

const KEYS = 20;
const DAILY = 1_000_000_000; // far above what a run spends: the quota only counts
const RESOURCE = 'load-model';

type Route = 'acquire' | 'adjust' | 'release' | 'available';
const latencies: Record<Route, number[]> = { acquire: [], adjust: [], release: [], available: [] };
const statuses = new Map<string, number>();
const errors: string[] = [];

async function call(base: string, route: Route, body: unknown, allowed: number[] = [200]) {
  const started = performance.now();
  let status = 0;
  let answer: Record<string, unknown> = {};
  try {
    const res = await fetch(`${base}/v1/${route}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    status = res.status;
    answer = (await res.json()) as Record<string, unknown>;
  } catch (error) {
    errors.push(`${route}: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  }
  latencies[route].push(performance.now() - started);
  statuses.set(`${route} ${status}`, (statuses.get(`${route} ${status}`) ?? 0) + 1);
  if (!allowed.includes(status)) {
    errors.push(`${route} ${status}: ${JSON.stringify(answer).slice(0, 200)}`);
    return undefined;
  }
  return { status, answer };
}

async function put(base: string, path: string, body: unknown) {
  const res = await fetch(`${base}/v1/admin/${path}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`PUT ${path}: ${res.status} ${await res.text()}`);
}

const percentile = (sorted: number[], p: number) =>
  Number((sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0).toFixed(2));

async function main() {
  // `npm start` as it runs for a user: its own DynamoDB Local (no endpoint given).
  const server = await spawnLocalServer(
    { SLUICE_TABLE_NAME: `load-${randomBytes(3).toString('hex')}` },
    60_000,
  );
  try {
    const base = server.url;
    const daily = { name: 'daily_tokens', metric: 'tokens', limit: DAILY, window: 'day' };
    await put(base, 'plans/load', { limits: [daily] });
    await put(base, 'entities/load-org', { limits: [{ ...daily, name: 'org_daily', shards: 8 }] });
    for (let k = 0; k < KEYS; k++)
      await put(base, `entities/key-${k}`, { plan: 'load', parent: 'load-org' });
    await put(base, 'entities/throttled', {
      limits: [{ name: 'rps', metric: 'requests', limit: 1, per: 'second' }],
    });
    await put(base, `resources/${RESOURCE}`, {
      price: { input: '2.50', output: '10.00' },
      limits: [
        { name: 'provider_tpm', metric: 'tokens', limit: 1_000_000_000, per: 'minute', shards: 4 },
      ],
    });

    const settled = new Map<string, number>(); // tokens each key's leases stand at, settled
    const add = (key: string, tokens: number) => settled.set(key, (settled.get(key) ?? 0) + tokens);
    const calls = { streamed: 0, plain: 0, failed: 0, refused: 0, throttledAdmitted: 0 };
    let deadline = 0;
    let seed = 1;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed / 2_147_483_648;
    };

    /** One client, until the deadline; `prefix` keeps the warm-up's keys apart. */
    const user = async (prefix: string) => {
      while (performance.now() < deadline) {
        const roll = random();
        if (roll < 0.1) {
          // A caller of a throttled key: mostly refused (429 is the answer, not an error).
          const r = await call(
            base,
            'acquire',
            { entity: 'throttled', resource: RESOURCE, usage: { input_tokens: 10 } },
            [200, 429],
          );
          if (r?.status === 429) calls.refused++;
          else if (r) {
            calls.throttledAdmitted++;
            await call(base, 'release', { lease_id: r.answer.lease_id });
          }
          continue;
        }
        const key = `${prefix}key-${Math.floor(random() * KEYS)}`;
        const input = 200 + Math.floor(random() * 1_800);
        const acquired = await call(base, 'acquire', {
          entity: key,
          resource: RESOURCE,
          usage: { input_tokens: input, output_tokens: 500 },
        });
        if (!acquired) continue;
        const lease = acquired.answer.lease_id;
        let final: Record<string, unknown> | undefined;
        if (roll < 0.7) {
          calls.streamed++;
          for (let chunk = 1; chunk <= 3; chunk++)
            await call(base, 'adjust', {
              lease_id: lease,
              usage: { input_tokens: input, output_tokens: 150 * chunk },
            });
          final = (
            await call(base, 'release', {
              lease_id: lease,
              usage: { input_tokens: input, output_tokens: 600 },
            })
          )?.answer;
        } else if (roll < 0.9) {
          calls.plain++;
          final = (
            await call(base, 'release', {
              lease_id: lease,
              usage: { input_tokens: input, output_tokens: Math.floor(random() * 900) },
            })
          )?.answer;
        } else {
          calls.failed++;
          final = (await call(base, 'release', { lease_id: lease }))?.answer; // the call failed
        }
        if (final) add(key, Number((final.usage as Record<string, number>).tokens ?? 0));
      }
    };
    // DynamoDB Local's JIT keeps speeding up for its first thousands of requests: the same mix
    // on keys of their own first, not measured (its errors count all the same).
    for (let k = 0; k < KEYS; k++) await put(base, `entities/warm-key-${k}`, { plan: 'load' });
    deadline = performance.now() + warmUp * 1000;
    await Promise.all(Array.from({ length: clients }, () => user('warm-')));
    for (const list of Object.values(latencies)) list.length = 0;
    statuses.clear();
    settled.clear();
    Object.assign(calls, { streamed: 0, plain: 0, failed: 0, refused: 0, throttledAdmitted: 0 });

    deadline = performance.now() + seconds * 1000;
    const started = performance.now();
    await Promise.all(Array.from({ length: clients }, () => user('')));
    const elapsed = (performance.now() - started) / 1000;

    // Conservation: each key's quota and the org's stand at the limit less what was settled.
    let missing = 0;
    const remainingOf = async (entity: string, name: string) => {
      const r = await call(base, 'available', { entity, resource: RESOURCE });
      const limits = (r?.answer.limits ?? []) as { name: string; remaining: number }[];
      return limits.find((l) => l.name === name)?.remaining;
    };
    let total = 0;
    for (let k = 0; k < KEYS; k++) {
      const key = `key-${k}`;
      const expected = DAILY - (settled.get(key) ?? 0);
      total += settled.get(key) ?? 0;
      const remaining = await remainingOf(key, 'daily_tokens');
      if (remaining !== expected) {
        missing++;
        errors.push(`${key}: daily_tokens remaining ${remaining}, expected ${expected}`);
      }
    }
    const orgRemaining = await remainingOf('key-0', 'org_daily');
    if (orgRemaining !== DAILY - total) {
      missing++;
      errors.push(`org: org_daily remaining ${orgRemaining}, expected ${DAILY - total}`);
    }

    const requests = Object.values(latencies).reduce((n, l) => n + l.length, 0);
    const routes = Object.fromEntries(
      Object.entries(latencies).map(([route, list]) => {
        const sorted = [...list].sort((a, b) => a - b);
        return [
          route,
          {
            requests: list.length,
            p50_ms: percentile(sorted, 0.5),
            p99_ms: percentile(sorted, 0.99),
          },
        ];
      }),
    );
    const report = {
      date: new Date().toISOString().slice(0, 10),
      seconds: Number(elapsed.toFixed(1)),
      clients,
      llm_calls_per_s: Number(((calls.streamed + calls.plain + calls.failed) / elapsed).toFixed(0)),
      http_requests_per_s: Number((requests / elapsed).toFixed(0)),
      calls,
      routes,
      statuses: Object.fromEntries(statuses),
      errors: errors.length,
      conservation: missing === 0 ? 'exact' : `${missing} scopes off`,
      tokens_settled: total,
    };
    if (values.json) console.log(JSON.stringify(report, null, 2));
    else {
      console.log(
        `${report.seconds} s, ${clients} clients against npm start: ${report.llm_calls_per_s} LLM calls/s, ${report.http_requests_per_s} HTTP requests/s`,
      );
      console.log(
        `calls: ${calls.streamed} streamed (acquire, 3 adjusts, release), ${calls.plain} plain, ${calls.failed} failed (released unused), ${calls.refused} refused, ${calls.throttledAdmitted} admitted on the throttled key`,
      );
      for (const [route, r] of Object.entries(routes))
        console.log(`  ${route}: ${r.requests} requests, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms`);
      console.log(
        `errors: ${errors.length}; conservation: ${report.conservation} (${total} tokens settled over ${KEYS} keys and their org)`,
      );
    }
    for (const error of errors.slice(0, 10)) console.error(error);
    if (errors.length > 0) process.exitCode = 1;
  } finally {
    await server.stop();
  }
}

await main();
