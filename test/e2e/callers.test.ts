/**
 * Callers bound to tenants, over HTTP on the local server started as `npm start` starts it, with
 * its opt-in setting that reads the principal from a header (there is no IAM locally).
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { put } from '../support/admin.js';
import { type Api, request, startApi, tableName } from '../support/api.js';
import { spawnLocalServer } from '../support/spawn.js';

const ACCOUNT = '111122223333';
const TEAM_A_API = `arn:aws:sts::${ACCOUNT}:assumed-role/team-a-api/chat`;
const TEAM_A_BATCH = `arn:aws:sts::${ACCOUNT}:assumed-role/team-a-batch/nightly`;
const TEAM_B = `arn:aws:sts::${ACCOUNT}:assumed-role/team-b-api/chat`;
const TRUST = { SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER: '1', SLUICE_CONFIG_CACHE_MS: '0' };

// Two servers on one table: one trusts the principal header, one (the default) does not.
const table = tableName('callers');
let trusting: Api;
let plain: Api;
beforeAll(async () => {
  [trusting, plain] = await Promise.all([
    startApi(table, TRUST),
    startApi(table, { SLUICE_CONFIG_CACHE_MS: '0' }),
  ]);
});
afterAll(async () => {
  await Promise.all([trusting?.stop(), plain?.stop()]);
});

let n = 0;
const limits = [{ name: 'tpm', metric: 'tokens', limit: 1_000, per: 2_592_000 }];

/** A request as `principal` (none: no header at all). */
function as(principal: string | undefined, server: Api = trusting) {
  const headers: Record<string, string> = principal ? { 'x-sluice-principal': principal } : {};
  return {
    post: (route: string, body: unknown) =>
      request('POST', `${server.url}/v1/${route}`, body, 'application/json', headers),
    usage: (entity: string) =>
      request('GET', `${server.url}/v1/usage?entity=${entity}`, undefined, undefined, headers),
  };
}

/** An org whose callers are team A's roles, and a key under it (which names none itself). */
async function tenant(keyConfig: Record<string, unknown> = {}) {
  const org = `cl-org-${++n}`;
  const key = `cl-key-${n}`;
  await put(trusting.url, `entities/${org}`, {
    callers: [`arn:aws:iam::${ACCOUNT}:role/team-a-*`],
  });
  await put(trusting.url, `entities/${key}`, { parent: org, limits, ...keyConfig });
  return { org, key };
}

const remaining = async (entity: string, principal = TEAM_A_API) => {
  const answer = await as(principal).post('available', { entity, resource: 'gpt-4o' });
  expect(answer.status).toBe(200);
  return (answer.body.limits as { name: string; remaining: number }[]).find((l) => l.name === 'tpm')
    ?.remaining;
};

describe('an entity that names its callers', () => {
  it('refuses a principal outside them on every route, changing nothing; one inside works', async () => {
    const { key } = await tenant();
    const acquired = await as(TEAM_A_API).post('acquire', {
      entity: key,
      resource: 'gpt-4o',
      usage: { tokens: 300 },
    });
    expect(acquired.status).toBe(200);
    const lease = acquired.body.lease_id;
    expect(await remaining(key)).toBe(700);

    for (const who of [TEAM_B, `arn:aws:sts::444455556666:assumed-role/team-a-api/x`, undefined]) {
      const client = as(who);
      const answers = {
        acquire: await client.post('acquire', {
          entity: key,
          resource: 'gpt-4o',
          usage: { tokens: 1 },
        }),
        available: await client.post('available', { entity: key, resource: 'gpt-4o' }),
        usage: await client.usage(key),
        adjust: await client.post('adjust', { lease_id: lease, usage: { tokens: 999 } }),
        release: await client.post('release', { lease_id: lease }),
      };
      for (const [route, answer] of Object.entries(answers)) {
        expect({ route, who, status: answer.status, code: answer.body.code }).toEqual({
          route,
          who,
          status: 403,
          code: 'caller_not_allowed',
        });
        expect(answer.headers.get('content-type')).toBe('application/problem+json');
      }
    }
    // Nothing changed: the bucket holds what team A took, and the lease is still unsettled.
    expect(await remaining(key)).toBe(700);
    const adjusted = await as(TEAM_A_BATCH).post('adjust', {
      lease_id: lease,
      usage: { tokens: 400 },
    });
    expect(adjusted.status).toBe(200); // another of team A's roles may settle it
    const released = await as(TEAM_A_API).post('release', {
      lease_id: lease,
      usage: { tokens: 350 },
    });
    expect(released.status).toBe(200);
    expect(released.body.usage).toMatchObject({ tokens: 350 });
    expect(await remaining(key)).toBe(650);
    expect((await as(TEAM_A_API).usage(key)).status).toBe(200);
  });

  it('needs every level that names callers to match (the key’s and its org’s)', async () => {
    const { key } = await tenant({ callers: [`arn:aws:iam::${ACCOUNT}:role/team-a-api`] });
    const ask = { entity: key, resource: 'gpt-4o', usage: { tokens: 10 } };

    expect((await as(TEAM_A_API).post('acquire', ask)).status).toBe(200);
    // team-a-batch matches the org's team-a-* but not the key's own list.
    const refused = await as(TEAM_A_BATCH).post('acquire', ask);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('caller_not_allowed');
  });

  it('checks every route, settling included, against the callers as they are now', async () => {
    const { org, key } = await tenant();
    const ask = { entity: key, resource: 'gpt-4o', usage: { tokens: 100 } };
    const lease = (await as(TEAM_A_API).post('acquire', ask)).body.lease_id;
    // The org now names team B only.
    await put(trusting.url, `entities/${org}`, {
      callers: [`arn:aws:iam::${ACCOUNT}:role/team-b-*`],
    });

    expect((await as(TEAM_A_API).post('acquire', ask)).status).toBe(403);
    expect((await as(TEAM_A_API).post('release', { lease_id: lease })).status).toBe(403);
    expect((await as(TEAM_B).post('acquire', ask)).status).toBe(200);
    expect(
      (await as(TEAM_B).post('release', { lease_id: lease, usage: { tokens: 80 } })).status,
    ).toBe(200);
  });

  it('settles a key moved to another org by the new org’s callers, not the lease’s', async () => {
    const { key } = await tenant(); // under an org of team A
    const lease = (
      await as(TEAM_A_API).post('acquire', {
        entity: key,
        resource: 'gpt-4o',
        usage: { tokens: 100 },
      })
    ).body.lease_id;
    const teamB = `cl-org-${++n}`;
    await put(trusting.url, `entities/${teamB}`, {
      callers: [`arn:aws:iam::${ACCOUNT}:role/team-b-*`],
    });
    await put(trusting.url, `entities/${key}`, { parent: teamB, limits });

    // The lease names the old org (read alongside, as the lease's ancestors); the check follows
    // the hierarchy as it is now.
    expect((await as(TEAM_A_API).post('release', { lease_id: lease })).status).toBe(403);
    expect(
      (await as(TEAM_B).post('release', { lease_id: lease, usage: { tokens: 80 } })).status,
    ).toBe(200);
  });

  it('binds leases acquired before the entity named its callers', async () => {
    const org = `cl-org-${++n}`;
    const key = `cl-key-${n}`;
    await put(trusting.url, `entities/${org}`, {});
    await put(trusting.url, `entities/${key}`, { parent: org, limits });
    const lease = (
      await as(TEAM_B).post('acquire', { entity: key, resource: 'gpt-4o', usage: { tokens: 100 } })
    ).body.lease_id;
    await put(trusting.url, `entities/${org}`, {
      callers: [`arn:aws:iam::${ACCOUNT}:role/team-a-*`],
    });

    expect((await as(TEAM_B).post('release', { lease_id: lease })).status).toBe(403);
    expect(await remaining(key)).toBe(900);
    expect((await as(TEAM_A_API).post('release', { lease_id: lease })).status).toBe(200);
    expect(await remaining(key)).toBe(1_000);
  });

  it('leaves entities without callers open to any caller, header or none', async () => {
    const entity = `cl-open-${++n}`;
    const ask = { entity, resource: 'gpt-4o', usage: { tokens: 10 }, limits };
    expect((await as(undefined).post('acquire', ask)).status).toBe(200);
    expect((await as(TEAM_B).post('acquire', ask)).status).toBe(200);
    expect((await as(undefined, plain).post('acquire', ask)).status).toBe(200);
  });
});

describe('the principal header', () => {
  it('means nothing to a server started without the setting: the request has no principal', async () => {
    const { key } = await tenant();
    const refused = await as(TEAM_A_API, plain).post('acquire', {
      entity: key,
      resource: 'gpt-4o',
      usage: { tokens: 10 },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.detail).toMatch(/no caller identity/);
  });

  it('is only trusted with the setting at exactly 1: any other value stops the server', async () => {
    await expect(
      spawnLocalServer({
        DYNAMODB_ENDPOINT: inject('dynamoEndpoint'),
        SLUICE_TABLE_NAME: table,
        SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER: 'yes',
      }),
    ).rejects.toThrow(/SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER must be 1/);
  });
});

describe('admin validation of callers', () => {
  it.each([
    [['arn:aws:iam::12345:role/team-a-*'], 'callers[0]'],
    [['*'], 'callers[0]'],
    [[`arn:aws:iam::${ACCOUNT}:role/ok`, `arn:aws:iam::${ACCOUNT}:group/devs`], 'callers[1]'],
    [[`arn:aws:iam::${ACCOUNT}:role/a b`], 'callers[0]'],
    [[], 'callers'],
    ['arn:aws:iam::111122223333:role/x', 'callers'],
  ])('refuses %j with a 400 naming %s, and stores nothing', async (callers, field) => {
    const entity = `cl-bad-${++n}`;
    const answer = await request('PUT', `${trusting.url}/v1/admin/entities/${entity}`, { callers });
    expect(answer.status).toBe(400);
    expect(answer.body).toMatchObject({ code: 'invalid_request', field });
    expect((await request('GET', `${trusting.url}/v1/admin/entities/${entity}`)).status).toBe(404);
  });
});
