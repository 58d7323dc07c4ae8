/**
 * `sluice` against the local server: the real executable from another directory, plan/apply
 * round trips, --prune, files that must store nothing, and SigV4 signing of admin calls.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SluiceAdmin } from '@sluice/client';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileApi, request } from '../support/api.js';
import { runCli } from '../support/cli.js';

const BIN = fileURLToPath(new URL('../../packages/cli/bin/sluice.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../examples/sluice.yaml', import.meta.url));

const api = fileApi('cli');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const cli = (...argv: string[]) => runCli(api.url, ...argv);

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('the sluice executable', () => {
  it('runs from any directory and plans the example file', () => {
    const run = spawnSync(process.execPath, [BIN, 'plan', '-f', EXAMPLE, '--endpoint', api.url], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('+ plan free');
    expect(run.stdout).toContain('+ entity acme-search-key-1');
    expect(run.stdout).toMatch(/Plan: 16 to create, 0 to change, 0 to delete/);
  });

  it('prints usage and exits 2 on an unknown command', () => {
    const run = spawnSync(process.execPath, [BIN, 'frobnicate'], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('sluice plan  -f sluice.yaml');
  });
});

describe('plan and apply', () => {
  const v1 = `
plans:
  basic:
    limits:
      - { name: rpm, metric: requests, limit: 10, per: minute }
entities:
  team: { plan: basic }
  team-key: { plan: basic, parent: team }
  old-key: { plan: basic }
`;

  it('applies a file, then shows only what changed, and --prune deletes what it omits', async () => {
    const first = await cli('apply', '-f', file('v1.yaml', v1));
    const same = await cli('plan', '-f', file('v1.yaml', v1));
    const v2 = v1.replace('limit: 10', 'limit: 20').replace('  old-key: { plan: basic }\n', '');
    const planned = await cli('plan', '-f', file('v2.yaml', v2));
    const pruned = await cli('apply', '-f', file('v2.yaml', v2), '--prune');

    expect(first.code, first.err).toBe(0);
    expect(first.out).toContain('Applied 4 changes.');
    expect(same.out).toContain('0 to create, 0 to change, 0 to delete, 4 unchanged');
    expect(planned.out).toContain('~ plan basic');
    expect(planned.out).toContain('"limit":10');
    expect(planned.out).toContain('? entity old-key');
    expect(pruned.out).toContain('- entity old-key');
    expect((await request('GET', `${api.url}/v1/admin/entities/old-key`)).status).toBe(404);
    expect((await request('GET', `${api.url}/v1/admin/plans/basic`)).body).toMatchObject({
      config: { limits: [{ limit: 20 }] },
    });
  });

  it('refuses a file with a parent cycle or an unknown field before storing anything', async () => {
    const cycle = await cli(
      'apply',
      '-f',
      file('cycle.yaml', 'entities:\n  ring-a: { parent: ring-b }\n  ring-b: { parent: ring-a }\n'),
    );
    const unknown = await cli(
      'apply',
      '-f',
      file('typo.yaml', 'resources:\n  typo-model:\n    prize: { input: "1", output: "2" }\n'),
    );

    expect(cycle.code).toBe(1);
    expect(cycle.err).toContain('cycle');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toContain('resources.typo-model');
    expect(unknown.err).toContain('prize');
    expect((await request('GET', `${api.url}/v1/admin/entities/ring-a`)).status).toBe(404);
    expect((await request('GET', `${api.url}/v1/admin/resources/typo-model`)).status).toBe(404);
  });

  it("refuses an entity's limit that would shard its plan's quota with alerts, storing not even the plan", async () => {
    const sharded = await cli(
      'apply',
      '-f',
      file(
        'alerted.yaml',
        `
plans:
  alerted-pro:
    limits:
      - { name: daily, metric: tokens, limit: 1000000, window: day, alerts: [0.5] }
entities:
  alerted-acme:
    plan: alerted-pro
    limits:
      - { name: tpm, metric: tokens, limit: 100000, per: minute, shards: 4 }
`,
      ),
    );

    expect(sharded.code).toBe(1);
    expect(sharded.err).toContain('entities.alerted-acme.limits[0].shards');
    expect(sharded.out).toBe('');
    expect((await request('GET', `${api.url}/v1/admin/plans/alerted-pro`)).status).toBe(404);
  });

  it('gets documents and reads the audit trail', async () => {
    await cli(
      'apply',
      '-f',
      file('get.yaml', 'resources:\n  got-model: { price: { input: "0.5", output: "1.5" } }\n'),
    );
    const got = await cli('get', 'resource', 'got-model');
    const missing = await cli('get', 'plan', 'never-made');
    const audit = await cli('audit', '--limit', '1');

    expect(JSON.parse(got.out)).toMatchObject({
      name: 'got-model',
      config: { price: { input: '0.5' } },
    });
    expect(missing.code).toBe(1);
    expect(audit.out).toContain('put resource got-model');
    expect(audit.out).toContain('before: null');
  });

  it("lists one entity's audit entries and alerts with --entity", async () => {
    const limits = '[{ name: rpm, metric: requests, limit: 5, per: minute }]';
    await cli('apply', '-f', file('mine.yaml', `entities:\n  cli-mine: { limits: ${limits} }\n`));
    await cli('apply', '-f', file('other.yaml', `entities:\n  cli-other: { limits: ${limits} }\n`));

    const mine = await cli('audit', '--entity', 'cli-mine');
    const alerts = await cli('alerts', '--entity', 'cli-mine');
    const empty = await cli('audit', '--entity', '');

    expect(mine.code).toBe(0);
    expect(mine.out).toContain('put entity cli-mine');
    expect(mine.out).not.toContain('cli-other');
    expect(alerts.out).toContain('(no budget alerts)');
    expect(empty.code).toBe(2);
    expect(empty.err).toContain('--entity');
  });
});

describe('SluiceAdmin signing', () => {
  it('signs admin calls for execute-api, query string included', async () => {
    const seen: { url: string; method: string; headers: Headers }[] = [];
    const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-real-secret' };
    const admin = new SluiceAdmin({
      endpoint: api.url,
      region: 'eu-west-1',
      credentials,
      fetch: async (input, init) => {
        seen.push({
          url: String(input),
          method: init?.method ?? 'GET',
          headers: new Headers(init?.headers),
        });
        return fetch(input, init);
      },
    });

    await admin.audit({ limit: 3 });

    const [request] = seen;
    const url = new URL(request?.url ?? '');
    const amzDate = request?.headers.get('x-amz-date') ?? '';
    const signingDate = new Date(
      amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'),
    );
    const expected = await new SignatureV4({
      service: 'execute-api',
      region: 'eu-west-1',
      credentials,
      sha256: Sha256,
    }).sign(
      {
        method: 'GET',
        protocol: url.protocol,
        hostname: url.hostname,
        port: Number(url.port),
        path: url.pathname,
        query: { limit: '3' },
        headers: { host: url.host },
      },
      { signingDate },
    );
    expect(request?.headers.get('authorization')).toBe(expected.headers.authorization);
    expect(request?.headers.get('authorization')).toContain('/eu-west-1/execute-api/aws4_request');
  });
});

describe('usage tables', () => {
  it('print an entity’s usage and the top entities, with costs in USD', async () => {
    const ask = {
      entity: 'cli-user',
      resource: 'cli-model',
      usage: { tokens: 1_500, cost_micro_usd: 2_500_000 },
      limits: [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 'minute' }],
    };
    expect((await request('POST', `${api.url}/v1/acquire`, ask)).status).toBe(200);

    await expect
      .poll(async () => (await cli('usage', 'cli-user', '--by', 'hour')).out, { timeout: 20_000 })
      .toContain('$2.500000');
    const usage = await cli('usage', 'cli-user');
    expect(usage.code).toBe(0);
    expect(usage.out).toMatch(/period\s+resource\s+requests/);
    const top = await cli('top', '--metric', 'tokens');
    expect(top.code).toBe(0);
    expect(top.out).toContain('Top entities by tokens');
    expect(top.out).toMatch(/1\s+cli-user\s+1\s+1,500\s+\$2\.500000/);

    const bad = await cli('usage', 'cli-user', '--by', 'week');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--by must be hour, day or month');
    const none = await cli('usage', 'nobody');
    expect(none.out).toContain('(no usage recorded for nobody)');
  });
});
