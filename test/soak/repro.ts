/**
 * Minimal reproductions of what the soak found, each on its own DynamoDB Local (in memory),
 * one or two `npm start` processes and, where a fault is needed, the soak's fault proxy aimed
 * at one write. Each prints what it saw and exits 1 when the misbehaviour shows.
 *
 *   npx tsx --conditions=sluice-source test/soak/repro.ts <scenario>
 *
 * Scenarios:
 * - refused-give-back: a refused acquire (429) whose give-back fails stays charged, and usage
 *   history counts it as a lease.
 * - rotation-404: right after a signing-key rotation, a second server answers 404
 *   lease_not_found to a valid lease signed with the new key.
 * - rotation-outage-404: the same while DynamoDB cannot be read: 404 where 503 is due.
 * - alert-drop: when the answer to the write creating a budget alert is lost, the alert is never
 *   sent (listed as undelivered).
 * - budget-cut-alert: a threshold reached by lowering a quota's limit never alerts.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { SluiceAdmin, SluiceClient, SluiceRequestError } from '@sluice/client';
import { freePort, localClient } from '@sluice/local';
import { type FaultPlan, FaultProxy } from './fault-proxy.js';
import { DynamoDBLocalProcess, killAllChildren, SluiceProcess } from './processes.js';
import { WebhookReceiver } from './webhook-receiver.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Rig {
  readonly servers: SluiceProcess[];
  readonly proxy: FaultProxy;
  readonly hook: WebhookReceiver;
  readonly table: string;
  readonly db: DynamoDBLocalProcess;
  /** The number stored in attribute `attr` of item (pk, sk), read around the proxy. */
  read(pk: string, sk: string, attr: string): Promise<number | undefined>;
}

/** DynamoDB Local, a fault proxy covering the requests `faultable` picks, `count` servers. */
async function rig(count: number, faultable: (target: string, body: string) => boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-repro-'));
  const db = new DynamoDBLocalProcess(await freePort(), join(dir, 'data'));
  await db.start();
  const proxy = await FaultProxy.start({ upstream: db.endpoint, faultable });
  const hook = await WebhookReceiver.start();
  const table = 'repro';
  const servers: SluiceProcess[] = [];
  for (let i = 0; i < count; i++) {
    const server = new SluiceProcess(
      `server-${i}`,
      await freePort(),
      {
        DYNAMODB_ENDPOINT: proxy.url,
        SLUICE_TABLE_NAME: table,
        SLUICE_ALERT_WEBHOOK: hook.url(),
        SLUICE_CONFIG_CACHE_MS: '0',
        POWERTOOLS_LOG_LEVEL: 'WARN',
      },
      join(dir, `server-${i}.log`),
    );
    await server.start();
    servers.push(server);
  }
  console.log(`logs in ${dir}`);
  const client = localClient(db.endpoint);
  const read = async (pk: string, sk: string, attr: string) => {
    const { Item } = await client.send(
      new GetItemCommand({
        TableName: table,
        Key: { pk: { S: pk }, sk: { S: sk } },
        ConsistentRead: true,
      }),
    );
    const n = Item?.[attr]?.N;
    return n === undefined ? undefined : Number(n);
  };
  const stop = async () => {
    client.destroy();
    for (const s of servers) await s.stop();
    await hook.close();
    await proxy.close();
    await db.stop();
  };
  return { rig: { servers, proxy, hook, table, db, read } satisfies Rig, stop };
}

/** Usage history of an entity today: tokens and leases. */
async function history(url: string, entity: string) {
  const answer = await new SluiceClient({ endpoint: url }).usage({ entity, granularity: 'day' });
  let tokens = 0;
  let leases = 0;
  for (const item of answer.items) {
    tokens += item.usage.tokens ?? 0;
    leases += item.leases;
  }
  return { tokens, leases };
}

const once = (proxy: FaultProxy, plan: FaultPlan) => {
  proxy.plan = plan;
  const before = proxy.faults.length;
  const timer = setInterval(() => {
    if (proxy.faults.length > before) {
      proxy.plan = {};
      clearInterval(timer);
    }
  }, 1);
};

const scenarios: Record<string, () => Promise<boolean>> = {
  /** A 429 whose give-back of the key's charge fails: the key stays charged, history counts it. */
  'refused-give-back': async () => {
    // The give-back: an UpdateItem on key k's shared item adding a negative amount.
    const { rig: r, stop } = await rig(
      1,
      (target, body) =>
        target.endsWith('.UpdateItem') && body.includes('"entity#k"') && /"N":"-\d+"/.test(body),
    );
    try {
      const [server] = r.servers as [SluiceProcess];
      const admin = new SluiceAdmin({ endpoint: server.url });
      await admin.put('entity', 'o', {
        limits: [{ name: 'org_tpm', metric: 'tokens', limit: 1_000, per: 'minute' }],
      });
      for (const key of ['k', 'k2'])
        await admin.put('entity', key, {
          parent: 'o',
          limits: [{ name: 'daily', metric: 'tokens', limit: 100_000, window: 'day' }],
        });
      const sluice = new SluiceClient({ endpoint: server.url });
      // Fill the org from another key; wait out the server's one-second memory of it.
      const full = await sluice.acquire({ entity: 'k2', resource: 'm', usage: { tokens: 1_000 } });
      console.log(`k2 takes the org's 1,000 tokens: allowed=${full.allowed}`);
      await sleep(1_500);
      r.proxy.plan = { internal: 1 }; // every give-back to k's item answers 500
      const refused = await sluice.acquire({ entity: 'k', resource: 'm', usage: { tokens: 500 } });
      r.proxy.plan = {};
      console.log(
        `k asks for 500: allowed=${refused.allowed}${refused.allowed ? '' : ` (${refused.code})`}; faults injected on its give-back: ${r.proxy.faults.length}`,
      );
      await sleep(4_000); // the stream aggregator counts
      const used = (await r.read('entity#k', '*', 'u_daily')) ?? 0;
      const counted = await history(server.url, 'k');
      console.log(`k's daily quota used: ${used} (expected 0: the call was refused)`);
      console.log(
        `k's usage history: ${counted.tokens} tokens in ${counted.leases} leases (expected 0 in 0)`,
      );
      return !refused.allowed && (used !== 0 || counted.leases !== 0);
    } finally {
      await stop();
    }
  },

  /** A lease signed with a just-rotated key, released twice at once on a second server. */
  'rotation-404': async () => {
    const { rig: r, stop } = await rig(2, () => false);
    try {
      const [a, b] = r.servers as [SluiceProcess, SluiceProcess];
      const limits = [{ name: 'rpm', metric: 'requests', limit: 1_000, per: 'minute' as const }];
      const ask = { entity: 'k', resource: 'm', usage: { tokens: 10 }, limits };
      const viaA = new SluiceClient({ endpoint: a.url });
      const viaB = new SluiceClient({ endpoint: b.url, retries: 0 });
      // B has read the signing keys (it signed a lease) before the rotation.
      const warm = await viaB.acquire(ask);
      if (warm.allowed) await viaB.release(warm.leaseId);
      const rotated = await new SluiceAdmin({ endpoint: a.url }).rotateSigningKey();
      console.log(`rotated through A: current key ${rotated.current}`);
      const lease = await viaA.acquire(ask);
      if (!lease.allowed) throw new Error('not admitted');
      const answers = await Promise.all(
        [0, 1].map((i) =>
          (i === 0
            ? viaB.release(lease.leaseId, { tokens: 7 })
            : sleep(5).then(() => viaB.release(lease.leaseId, { tokens: 7 }))
          )
            .then((x) => `200 settled=${x.settled}`)
            .catch((e: unknown) =>
              e instanceof SluiceRequestError ? `${e.status} ${e.code}` : String(e),
            ),
        ),
      );
      console.log(`two identical releases of A's new lease, on B at once: ${answers.join(', ')}`);
      console.log('expected: both 200 settled=true (the same release again answers the same)');
      return answers.some((x) => x.startsWith('404'));
    } finally {
      await stop();
    }
  },

  /** A lease signed with a just-rotated key, released on a second server while DynamoDB is down. */
  'rotation-outage-404': async () => {
    const { rig: r, stop } = await rig(2, () => false);
    try {
      const [a, b] = r.servers as [SluiceProcess, SluiceProcess];
      const limits = [{ name: 'rpm', metric: 'requests', limit: 1_000, per: 'minute' as const }];
      const ask = { entity: 'k', resource: 'm', usage: { tokens: 10 }, limits };
      const viaA = new SluiceClient({ endpoint: a.url });
      const viaB = new SluiceClient({ endpoint: b.url, retries: 0, timeoutMs: 5_000 });
      const warm = await viaB.acquire(ask);
      if (warm.allowed) await viaB.release(warm.leaseId);
      await new SluiceAdmin({ endpoint: a.url }).rotateSigningKey();
      const lease = await viaA.acquire(ask);
      if (!lease.allowed) throw new Error('not admitted');
      await r.db.kill(); // connections refused: each read fails at once
      const release = () =>
        viaB
          .release(lease.leaseId, { tokens: 7 })
          .then((x) => (x.degraded ? '503 (unavailable)' : `200 settled=${x.settled}`))
          .catch((e: unknown) =>
            e instanceof SluiceRequestError ? `${e.status} ${e.code}` : String(e),
          );
      const first = await release();
      await sleep(100);
      const second = await release();
      console.log(
        `A's new lease released on B twice, 100 ms apart, DynamoDB down: ${first}, then ${second}`,
      );
      console.log(
        'expected: 503 both times (retry later); a 404 tells the client the lease is gone',
      );
      return first.startsWith('404') || second.startsWith('404');
    } finally {
      await stop();
    }
  },

  /** The answer to the alert's creating write is lost once. */
  'alert-drop': async () => {
    const { rig: r, stop } = await rig(
      1,
      (target, body) => target.endsWith('.UpdateItem') && body.includes('"S":"alert"'),
    );
    try {
      const [server] = r.servers as [SluiceProcess];
      await new SluiceAdmin({ endpoint: server.url }).put('entity', 'k', {
        limits: [{ name: 'daily', metric: 'tokens', limit: 1_000, window: 'day', alerts: [0.5] }],
      });
      once(r.proxy, { dropAfterApplied: 1 });
      const sluice = new SluiceClient({ endpoint: server.url });
      const lease = await sluice.acquire({ entity: 'k', resource: 'm', usage: { tokens: 600 } });
      console.log(`600 of 1,000 taken: allowed=${lease.allowed}`);
      await sleep(8_000);
      const listed = (await new SluiceAdmin({ endpoint: server.url }).alerts()).items;
      console.log(
        `dropped answers: ${r.proxy.faults.length}; alerts listed: ${listed.map((a) => `${a.threshold} delivered=${a.delivered}`).join(', ') || 'none'}; webhook received: ${r.hook.receipts.length}`,
      );
      console.log('expected: one alert, delivered, received once');
      return r.hook.receipts.length !== 1 || listed.some((a) => !a.delivered);
    } finally {
      await stop();
    }
  },

  /** A budget cut below what is used: the 100% threshold is reached and never alerts. */
  'budget-cut-alert': async () => {
    const { rig: r, stop } = await rig(1, () => false);
    try {
      const [server] = r.servers as [SluiceProcess];
      const admin = new SluiceAdmin({ endpoint: server.url });
      const quota = (limit: number) => ({
        limits: [{ name: 'daily', metric: 'tokens', limit, window: 'day', alerts: [0.5, 1] }],
      });
      await admin.put('entity', 'k', quota(1_000));
      const sluice = new SluiceClient({ endpoint: server.url });
      const lease = await sluice.acquire({ entity: 'k', resource: 'm', usage: { tokens: 600 } });
      if (!lease.allowed) throw new Error('not admitted');
      await admin.put('entity', 'k', quota(550)); // the budget cut: 600 used of 550
      await sluice.adjust(lease.leaseId, { tokens: 620 }); // a write under the new limit
      await sleep(5_000);
      const listed = (await admin.alerts()).items;
      const used = await r.read('entity#k', '*', 'u_daily');
      console.log(
        `used ${used} of a daily limit cut from 1,000 to 550; alerts: ${listed.map((a) => `${a.threshold} (used ${a.used} of ${a.limitValue})`).join(', ') || 'none'}`,
      );
      console.log(
        'expected: 0.5, and 1 once a write sees the used amount at or above the new limit',
      );
      return !listed.some((a) => a.threshold === 1);
    } finally {
      await stop();
    }
  },
};

const name = process.argv[2] ?? '';
const scenario = scenarios[name];
if (!scenario) {
  console.error(`usage: repro.ts <${Object.keys(scenarios).join('|')}>`);
  process.exit(2);
}
try {
  const shows = await scenario();
  console.log(shows ? 'REPRODUCED' : 'not reproduced');
  process.exitCode = shows ? 1 : 0;
} finally {
  killAllChildren();
}
