/**
 * The soak: DynamoDB Local on a data directory behind a fault proxy, two `npm start` processes
 * on one table (each with its stream aggregator) behind recording taps, a webhook for budget
 * alerts, and clients calling through `@sluice/client` — while a fault schedule pauses, kills
 * and restarts DynamoDB Local, throttles, fails and drops its answers, and kills one server
 * mid-request, and an admin edits limits and budgets and rotates the signing key. Then the
 * checks of oracle.ts. Bounded: it stops by itself, and every child process ends with it.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { type BudgetAlert, SluiceAdmin, SluiceClient, SluiceRequestError } from '@sluice/client';
import { freePort, localClient } from '@sluice/local';
import { ApiTap } from './api-tap.js';
import {
  allWrites,
  documentOf,
  EDITS,
  ENTITIES,
  initialConfig,
  middayZone,
  type SoakConfig,
} from './config.js';
import { FaultProxy } from './fault-proxy.js';
import { ledgerNote, type TapNote, tapNote, type WriteNote } from './notes.js';
import {
  type CheckRow,
  type ConfigVersion,
  checks,
  decisionCounts,
  expectedHistory,
  type HistoryTotals,
  type PhaseKind,
  type PhaseRecord,
  type SoakRecord,
} from './oracle.js';
import { DynamoDBLocalProcess, killAllChildren, SluiceProcess } from './processes.js';
import { WebhookReceiver } from './webhook-receiver.js';
import { seeded, Workload } from './workload.js';

export interface SoakOptions {
  /** The fault schedule's length, final calm phase included. @default 180 */
  readonly seconds?: number;
  /** Clients calling at once. @default 10 */
  readonly users?: number;
  /** The SDK's deadline per call. @default 1_500 */
  readonly timeoutMs?: number;
  /** How late past its deadline an SDK call may end. @default 200 (plus the harness's own stalls) */
  readonly slackMs?: number;
  /** @default 1 */
  readonly seed?: number;
  /** Stops the run early (Ctrl-C); cleanup still runs. */
  readonly signal?: AbortSignal;
  /** Progress lines. @default none */
  readonly log?: (line: string) => void;
  /**
   * Changes the record before the checks: a way to show that the oracle catches violations
   * (e.g. count every admission twice). @default none
   */
  readonly tamper?: (record: SoakRecord) => SoakRecord;
}

export interface SoakReport {
  readonly rows: readonly CheckRow[];
  readonly ok: boolean;
  readonly summary: readonly string[];
  /** Where the servers' logs are. */
  readonly logDir: string;
}

/** The phases, as shares of the run: calm ones between faults, and a final calm phase. */
const SCHEDULE: readonly (readonly [PhaseKind, number])[] = [
  ['calm', 0.08],
  ['throttle', 0.09],
  ['calm', 0.06],
  ['pause', 0.14],
  ['calm', 0.07],
  ['internal', 0.07],
  ['server_kill', 0.08],
  ['calm', 0.05],
  ['drop', 0.08],
  ['ddb_kill', 0.09],
  ['final', 0.19],
];

/** Probabilities the fault proxy applies in its phases (per request it covers). */
const PROXY_PLANS = {
  throttle: { throttle: 0.35 },
  internal: { internal: 0.25 },
  drop: { dropAfterApplied: 0.15 },
} as const;

/** When the final calm phase starts, as a share of the run. */
const FINAL_AT = 1 - (SCHEDULE.at(-1)?.[1] ?? 0);

/** How much later than its write an edit may still be unseen: the configuration cache's time. */
const CONFIG_CACHE_MS = 1_000;

class Aborted extends Error {}

function sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Aborted('aborted'));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Aborted('aborted'));
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      Math.max(0, atMs - Date.now()),
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const sleep = (ms: number, signal?: AbortSignal) => sleepUntil(Date.now() + ms, signal);

/**
 * Runs the soak and checks it.
 *
 * @example
 * const report = await runSoak({ seconds: 60 });
 * console.log(renderReport(report));
 */
export async function runSoak(options: SoakOptions = {}): Promise<SoakReport> {
  const seconds = options.seconds ?? 180;
  const timeoutMs = options.timeoutMs ?? 1_500;
  const slackMs = options.slackMs ?? 200;
  const seed = options.seed ?? 1;
  const signal = options.signal;
  const log = options.log ?? (() => {});
  const workDir = mkdtempSync(join(tmpdir(), 'sluice-soak-'));
  const dataDir = join(workDir, 'dynamodb');
  mkdirSync(dataDir);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();

  const stoppers: (() => Promise<void>)[] = [];
  let workload: Workload | undefined;
  const stopAll = async () => {
    for (const stop of stoppers.reverse()) await stop().catch(() => {});
    killAllChildren();
  };
  try {
    const ports = new Set<number>();
    while (ports.size < 3) ports.add(await freePort());
    const [dbPort, port0, port1] = [...ports] as [number, number, number];
    const db = new DynamoDBLocalProcess(dbPort, dataDir);
    log(`DynamoDB Local on ${db.endpoint} (data in ${dataDir})`);
    await db.start();
    stoppers.push(() => db.stop());
    const proxy = await FaultProxy.start<WriteNote>({
      upstream: db.endpoint,
      random: seeded(seed),
      inspect: (target, body) => ledgerNote(target, body),
    });
    stoppers.push(() => proxy.close());
    const hook = await WebhookReceiver.start();
    stoppers.push(() => hook.close());
    const env = {
      DYNAMODB_ENDPOINT: proxy.url,
      SLUICE_TABLE_NAME: `soak-${randomBytes(4).toString('hex')}`,
      SLUICE_ALERT_WEBHOOK: hook.url(),
      SLUICE_CONFIG_CACHE_MS: String(CONFIG_CACHE_MS),
      SLUICE_DENIAL_FLUSH_MS: '2000',
      POWERTOOLS_LOG_LEVEL: 'WARN',
    };
    const servers = [
      new SluiceProcess('server-0', port0, env, join(workDir, 'server-0.log')),
      new SluiceProcess('server-1', port1, env, join(workDir, 'server-1.log')),
    ] as const;
    for (const server of servers) {
      await server.start();
      stoppers.push(() => server.stop());
    }
    log(`servers on ${servers.map((s) => s.url).join(', ')}; logs in ${workDir}`);
    const tapOf = (server: SluiceProcess) =>
      ApiTap.start<TapNote>({ upstream: server.url, inspect: tapNote });
    const taps = [await tapOf(servers[0]), await tapOf(servers[1])] as const;
    for (const tap of taps) stoppers.push(() => tap.close());

    // Configuration, through the first server (the second reads it through its cache).
    const zone = middayZone(Date.now());
    let config: SoakConfig = initialConfig(seconds, zone);
    const admin = new SluiceAdmin({ endpoint: servers[0].url, timeoutMs: 10_000 });
    await admin.putSettings(config.settings);
    for (const write of allWrites(config))
      await admin.put(write.kind, write.name, documentOf(config, write));
    const versions: ConfigVersion[] = [
      { label: 'initial', config, fromMs: 0, untilMs: Number.POSITIVE_INFINITY },
    ];
    await sleep(CONFIG_CACHE_MS + 200, signal);
    await warmUp(
      servers.map((server) => server.url),
      signal,
    );
    await recovery(db.endpoint, env.SLUICE_TABLE_NAME, signal);

    const users = new Workload({
      endpoints: taps.map((t) => t.url),
      users: options.users ?? 10,
      timeoutMs,
      seed,
    });
    workload = users;

    const startMs = Date.now();
    const at = (share: number) => startMs + share * seconds * 1_000;
    const phases: PhaseRecord[] = [];
    log(`run: ${seconds} s from ${new Date(startMs).toISOString()}, zone ${zone}`);
    const running = users.run();

    // The admin's edits, each retried until it answers (outages included).
    const editor = new SluiceAdmin({ endpoint: taps[0].url, timeoutMs: 5_000 });
    const editLog: string[] = [];
    const edits = (async () => {
      for (const edit of EDITS) {
        await sleepUntil(at(edit.at), signal);
        const firstMs = Date.now();
        const next = 'write' in edit ? edit.change(config) : config;
        let answeredMs: number | undefined;
        // Until the final phase: an edit made during an outage lands when the outage ends.
        while (answeredMs === undefined && Date.now() < at(FINAL_AT)) {
          try {
            if ('write' in edit)
              await editor.put(edit.write.kind, edit.write.name, documentOf(next, edit.write));
            else await editor.rotateSigningKey();
            answeredMs = Date.now();
          } catch (error) {
            // A refusal (4xx) is the harness's mistake; an outage (5xx, no answer) is retried.
            if (error instanceof SluiceRequestError && (error.status ?? 0) < 500) throw error;
            await sleep(1_000, signal);
          }
        }
        editLog.push(
          `${((firstMs - startMs) / 1_000).toFixed(1)} s ${edit.label}: ${answeredMs === undefined ? 'never answered' : `answered after ${answeredMs - firstMs} ms`}`,
        );
        if (!('write' in edit)) continue;
        const previous = versions.at(-1) as ConfigVersion;
        versions[versions.length - 1] = {
          ...previous,
          untilMs:
            answeredMs === undefined
              ? Number.POSITIVE_INFINITY
              : answeredMs + CONFIG_CACHE_MS + 500,
        };
        versions.push({
          label: edit.label,
          config: next,
          fromMs: firstMs,
          untilMs: Number.POSITIVE_INFINITY,
        });
        config = next;
      }
    })();
    edits.catch(() => {});

    // The fault schedule.
    let share = 0;
    let history = new Map<string, HistoryTotals | string>();
    for (const [kind, length] of SCHEDULE) {
      const phaseStart = Math.max(Date.now(), at(share));
      await sleepUntil(phaseStart, signal);
      share += length;
      const endAt = at(share);
      const spanMs = endAt - phaseStart;
      const began = Date.now();
      let note: string | undefined;
      log(`${((began - startMs) / 1_000).toFixed(1)} s: ${kind}`);
      switch (kind) {
        case 'calm':
          await sleepUntil(endAt, signal);
          break;
        case 'throttle':
        case 'internal':
        case 'drop':
          proxy.plan = PROXY_PLANS[kind];
          await sleepUntil(endAt, signal).finally(() => {
            proxy.plan = {};
          });
          break;
        case 'pause':
          db.pause();
          await sleepUntil(endAt, signal).finally(() => db.resume());
          note = `resumed; DynamoDB answered promptly again ${await recovery(db.endpoint, env.SLUICE_TABLE_NAME, signal)} ms later`;
          break;
        case 'server_kill': {
          // Mid-request: wait (briefly) for the server to have requests in flight.
          const waitUntil = Date.now() + 2_000;
          while (taps[1].inFlight === 0 && Date.now() < waitUntil) await sleep(5, signal);
          note = `${taps[1].inFlight} requests in flight at SIGKILL`;
          await servers[1].kill();
          await sleep(Math.max(500, spanMs * 0.4), signal);
          await servers[1].start();
          await sleepUntil(endAt, signal);
          note += `; DynamoDB answering promptly ${await recovery(db.endpoint, env.SLUICE_TABLE_NAME, signal)} ms after the phase's end`;
          break;
        }
        case 'ddb_kill':
          await db.kill();
          await sleep(Math.max(1_000, spanMs * 0.2), signal);
          await db.start();
          note = `restarted ${Date.now() - began} ms after SIGKILL`;
          await sleepUntil(endAt, signal);
          note += `; answering promptly ${await recovery(db.endpoint, env.SLUICE_TABLE_NAME, signal)} ms later`;
          break;
        case 'final': {
          users.stop();
          await running;
          await users.settleAll(endAt + 20_000, signal);
          note = `${users.unsettled().length} leases still unsettled after the retries`;
          history = await caughtUp(
            servers[0].url,
            () =>
              expectedHistory({
                versions,
                leases: [...users.leases.values()],
                tap: tapRecord(taps),
              }),
            Math.max(endAt, Date.now() + 10_000) + 30_000,
            signal,
          );
          break;
        }
      }
      phases.push({ kind, startMs: began, endMs: Date.now(), ...(note ? { note } : {}) });
    }
    await edits;
    const endMs = Date.now();

    // What the table and the API say now, read around the proxy.
    const table = await readQuotas(db.endpoint, env.SLUICE_TABLE_NAME);
    const alerts = await deliveredAlerts(servers[0].url, Date.now() + 15_000);
    loop.disable();
    const record: SoakRecord = {
      seconds,
      timeoutMs,
      slackMs: slackMs + loop.max / 1e6,
      graceMs: timeoutMs * 2 + 1_000,
      phases,
      versions,
      tap: tapRecord(taps),
      proxyExchanges: proxy.exchanges,
      faults: proxy.faults,
      calls: users.calls,
      leases: [...users.leases.values()],
      table,
      history,
      alerts,
      receipts: hook.receipts,
      loopDelayMaxMs: loop.max / 1e6,
      logCounts: logCounts(workDir),
    };
    writeFileSync(join(workDir, 'record.json'), JSON.stringify(record, recordJson));
    const rows = checks(options.tamper ? options.tamper(record) : record);
    return {
      rows,
      ok: rows.every((r) => r.pass),
      summary: summaryOf(record, users, startMs, endMs, editLog, workDir),
      logDir: workDir,
    };
  } finally {
    workload?.stop();
    loop.disable();
    await stopAll();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * How often the servers logged each error or warning (their JSON log lines): by message, and
 * for a failed request by its error's message.
 */
function logCounts(workDir: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of ['server-0', 'server-1']) {
    let text = '';
    try {
      text = readFileSync(join(workDir, `${name}.log`), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const entry = JSON.parse(line) as {
          level?: string;
          message?: string;
          error?: { message?: string };
        };
        if (entry.level !== 'ERROR' && entry.level !== 'WARN') continue;
        const key = `${entry.message}${entry.error?.message ? `: ${entry.error.message}` : ''}`;
        counts[key] = (counts[key] ?? 0) + 1;
      } catch {
        // not a log entry
      }
    }
  }
  return counts;
}

/** Maps as arrays of entries, infinities as null: the record as JSON, for looking into a run. */
function recordJson(_key: string, value: unknown): unknown {
  return value instanceof Map ? [...value] : value;
}

/**
 * A few seconds of calls on an entity of its own (inline limits, no stored record), around the
 * taps and before the clock starts: a cold server (its caches, its signing key, its first AWS
 * SDK connections) and a cold DynamoDB Local (its JIT) are not what a soak measures.
 */
async function warmUp(urls: readonly string[], signal?: AbortSignal): Promise<void> {
  const until = Date.now() + 5_000;
  await Promise.all(
    urls.map(async (url) => {
      const client = new SluiceClient({ endpoint: url, timeoutMs: 5_000 });
      while (Date.now() < until && !signal?.aborted) {
        const lease = await client.acquire({
          entity: 'soak-warm-up',
          resource: 'warm-up',
          usage: { input_tokens: 10, output_tokens: 10 },
          limits: [{ name: 'rpm', metric: 'requests', limit: 1_000_000, per: 'minute' }],
        });
        if (lease.allowed)
          await client.release(lease.leaseId, { input_tokens: 5, output_tokens: 5 });
      }
    }),
  );
}

/**
 * Waits until DynamoDB answers a read promptly (under 250 ms, three times in a row, read around
 * the proxy), for at most 30 s, and says how long that took. A DynamoDB Local just resumed or
 * restarted works through a backlog first (and the servers' stream readers catch up): until it
 * answers promptly, the outage is not over.
 */
async function recovery(endpoint: string, tableName: string, signal?: AbortSignal) {
  const client = localClient(endpoint);
  const start = Date.now();
  try {
    for (let prompt = 0; prompt < 3 && Date.now() - start < 30_000; ) {
      const t = Date.now();
      try {
        await client.send(
          new GetItemCommand({
            TableName: tableName,
            Key: { pk: { S: 'soak#probe' }, sk: { S: '-' } },
          }),
          { abortSignal: AbortSignal.timeout(2_000) },
        );
        prompt = Date.now() - t < 250 ? prompt + 1 : 0;
      } catch {
        prompt = 0;
      }
      await sleep(100, signal);
    }
  } finally {
    client.destroy();
  }
  return Date.now() - start;
}

function tapRecord(taps: readonly ApiTap<TapNote>[]): SoakRecord['tap'] {
  return taps.flatMap((tap, server) => tap.exchanges.map((x) => ({ ...x, server })));
}

/** Polls usage history until it equals the model, or stops changing, or time is up. */
async function caughtUp(
  url: string,
  model: () => Map<string, HistoryTotals>,
  deadlineMs: number,
  signal?: AbortSignal,
): Promise<Map<string, HistoryTotals | string>> {
  const client = new SluiceClient({ endpoint: url, timeoutMs: 10_000 });
  let last = '';
  let same = 0;
  let read = new Map<string, HistoryTotals | string>();
  for (;;) {
    read = new Map();
    for (const entity of ENTITIES) {
      try {
        const history = await client.usage({ entity, granularity: 'day' });
        const usage: Record<string, number> = {};
        let leases = 0;
        for (const item of history.items) {
          for (const [metric, n] of Object.entries(item.usage))
            usage[metric] = (usage[metric] ?? 0) + n;
          leases += item.leases;
        }
        read.set(entity, { usage, leases });
      } catch (error) {
        read.set(entity, String(error));
      }
    }
    const want = model();
    const equal = ENTITIES.every((e) => {
      const got = read.get(e);
      const w = want.get(e) ?? { usage: {}, leases: 0 };
      return (
        typeof got === 'object' &&
        got.leases === w.leases &&
        ['requests', 'tokens', 'input_tokens', 'output_tokens'].every(
          (m) => (got.usage[m] ?? 0) === (w.usage[m] ?? 0),
        )
      );
    });
    const text = JSON.stringify([...read]);
    same = text === last ? same + 1 : 0;
    last = text;
    if (equal || same >= 4 || Date.now() > deadlineMs) return read;
    await sleep(2_000, signal);
  }
}

/** Every quota's used amount and window (`u_*`, `w_*`) on the entities' shared items. */
async function readQuotas(endpoint: string, tableName: string): Promise<Map<string, number>> {
  const client = localClient(endpoint);
  const out = new Map<string, number>();
  try {
    for (const entity of ENTITIES) {
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: { pk: { S: `entity#${entity}` }, sk: { S: '*' } },
          ConsistentRead: true,
        }),
      );
      for (const [attr, value] of Object.entries(Item ?? {}))
        if ((attr.startsWith('u_') || attr.startsWith('w_')) && value.N !== undefined)
          out.set(`entity#${entity}|*::${attr}`, Number(value.N));
    }
  } finally {
    client.destroy();
  }
  return out;
}

/**
 * The alerts once none is listed undelivered, or as they are at `deadline`: the server that
 * claimed an alert sends it when its reader reads that batch again, and after an outage a reader
 * may back off for seconds after usage history is already complete (its other reader counted it).
 */
async function deliveredAlerts(url: string, deadline: number): Promise<BudgetAlert[]> {
  for (;;) {
    const alerts = await allAlerts(url);
    if (alerts.every((alert) => alert.delivered) || Date.now() >= deadline) return alerts;
    await sleep(250);
  }
}

async function allAlerts(url: string): Promise<BudgetAlert[]> {
  const admin = new SluiceAdmin({ endpoint: url, timeoutMs: 10_000 });
  const out: BudgetAlert[] = [];
  let cursor: string | null = null;
  do {
    const page: { items: BudgetAlert[]; next: string | null } = await admin.alerts({
      limit: 100,
      ...(cursor ? { cursor } : {}),
    });
    out.push(...page.items);
    cursor = page.next;
  } while (cursor);
  return out;
}

function summaryOf(
  record: SoakRecord,
  workload: Workload,
  startMs: number,
  endMs: number,
  editLog: readonly string[],
  workDir: string,
): string[] {
  const seconds = (endMs - startMs) / 1_000;
  const acquires = record.calls.filter((c) => c.op === 'acquire');
  const count = (items: readonly string[]) => {
    const m = new Map<string, number>();
    for (const i of items) m.set(i, (m.get(i) ?? 0) + 1);
    return [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
  };
  const t = (ms: number) => ((ms - startMs) / 1_000).toFixed(1);
  return [
    `run ${seconds.toFixed(1)} s: ${acquires.length} acquires (${(acquires.length / seconds).toFixed(1)}/s), ${record.calls.length} SDK calls (${(record.calls.length / seconds).toFixed(1)}/s), ${record.tap.length} HTTP requests at the servers (${(record.tap.length / seconds).toFixed(1)}/s), ${record.proxyExchanges.length} DynamoDB requests`,
    `acquires by kind and outcome: ${count(acquires.map((c) => `${c.kind}/${c.outcome}`))}`,
    `other SDK calls: ${count(record.calls.filter((c) => c.op !== 'acquire').map((c) => `${c.op} ${c.outcome}`))}`,
    `server answers: ${[...decisionCounts(record)]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
    `faults injected: ${count(record.faults.map((f) => `${f.kind}${f.exception ? ` (${f.exception})` : ''} ${f.target.slice(f.target.indexOf('.') + 1)}`)) || 'none'}; DynamoDB requests of unknown outcome (no answer): ${record.proxyExchanges.filter((x) => x.outcome === 'unknown').length}`,
    `phases: ${record.phases
      .map((p) => {
        const asked = acquires.filter((c) => c.startMs >= p.startMs && c.startMs < p.endMs);
        const admitted = asked.filter((c) =>
          ['allowed', 'reserved', 'fell_back'].includes(c.outcome),
        ).length;
        const rate = (n: number) => (n / Math.max(0.001, (p.endMs - p.startMs) / 1_000)).toFixed(1);
        return `${p.kind} ${t(p.startMs)}–${t(p.endMs)} s, ${rate(asked.length)} acquires/s (${rate(admitted)} admitted/s)${p.note ? ` (${p.note})` : ''}`;
      })
      .join('; ')}`,

    `admin: ${editLog.join('; ')}`,
    `shadow limit would have refused ${workload.shadowViolations} admitted calls; webhook received ${record.receipts.length} alerts`,
    `servers' error and warning lines: ${
      Object.entries(record.logCounts)
        .sort((a, b) => b[1] - a[1])
        .map(([message, n]) => `${n}× ${message}`)
        .join('; ') || 'none'
    }`,
    `logs and the whole record (record.json): ${workDir}`,
  ];
}
