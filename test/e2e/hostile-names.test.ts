/**
 * Names users choose, named after what every plain object and every function has without being
 * given it (`constructor`, `toString`, `__proto__`, `length`, `call`…), in every place the API
 * takes a name, over HTTP on the local server as `npm start` runs it. A plain object keyed by such
 * a name answers with what it inherits (`counts.constructor` is a function, and `+ 1` makes it a
 * string), so each place must either refuse the name with a 400 naming the field and change
 * nothing, or treat it as any other name: charged, settled and refused exactly, counted in usage
 * history, alerted on, for that tenant and without stopping anyone else's history. A body nested
 * deeper than any request needs (more than 16 levels) is refused the same way: a 400 naming
 * where it goes too deep.
 */
import { createServer, type Server } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Api, request, startApi, tableName } from '../support/api.js';

/** Every name a plain object or a function answers without having been given it. */
const HOSTILE = [
  ...new Set([
    ...Object.getOwnPropertyNames(Object.prototype),
    ...Object.getOwnPropertyNames(Function.prototype),
    '__proto__',
  ]),
].sort();

// The patterns the API documents for names: a name that matches is accepted, any other refused.
const METRIC = /^[a-z][a-z0-9_]{0,31}$/;
const LIMIT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const IDENTIFIER = /^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$/;
const PLAN_NAME = LIMIT_NAME;
/** A caller is an IAM principal ARN pattern: no bare name is one. */
const CALLER = /^arn:aws:/;

const ACCOUNT = '111122223333';
const MODEL = 'hostile-model';
/** A 30-day bucket: at 1,000 or less it refills a unit in 43 minutes, so amounts stay exact. */
const PER = 2_592_000;
const RPM = { name: 'rpm', metric: 'requests', limit: 1_000, per: PER };
const CAP = { name: 'cap', metric: 'units', limit: 1_000, per: PER };

let api: Api;
let hook: Server;
const webhook: { detail: { entity: string; limit: string; threshold: number } }[] = [];

beforeAll(async () => {
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      webhook.push(JSON.parse(body));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  const address = hook.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  api = await startApi(tableName('hostile'), {
    SLUICE_ALERT_WEBHOOK: `http://127.0.0.1:${port}/alerts`,
    SLUICE_DENIAL_FLUSH_MS: '200',
    SLUICE_LOCAL_UNSAFE_TRUST_PRINCIPAL_HEADER: '1',
    POWERTOOLS_LOG_LEVEL: 'ERROR', // the aggregator's failures, for the history test to show
  });
});

afterAll(async () => {
  await api?.stop();
  await new Promise((resolve) => hook?.close(resolve));
});

type Answer = Awaited<ReturnType<typeof request>>;

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  request(method, `${api.url}${path}`, body, 'application/json', headers);
const post = (route: string, body: unknown, headers?: Record<string, string>) =>
  call('POST', `/v1/${route}`, body, headers);
const put = (path: string, body: unknown) => call('PUT', `/v1/admin/${path}`, body);
const get = (path: string, params: Record<string, string> = {}) => {
  const query = new URLSearchParams(params).toString();
  return call('GET', query ? `${path}?${query}` : path);
};

/** JSON with every object's keys in order: equal values, equal text. */
const canonical = (value: unknown) =>
  JSON.stringify(value, (_, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );

/** An own property of a parsed answer: never what every object inherits. */
const own = (obj: unknown, key: string): unknown =>
  typeof obj === 'object' && obj !== null
    ? Object.getOwnPropertyDescriptor(obj, key)?.value
    : undefined;

/** `{ [name]: amount }` for each name, as own properties (`__proto__` too). */
const usageOf = (names: readonly string[], amount: number) =>
  Object.fromEntries(names.map((name) => [name, amount]));

/** An answer's limits as `[name, remaining]`, in name order. */
function remainingOf(answer: Answer): [unknown, unknown][] {
  const limits = own(answer.body, 'limits');
  return (Array.isArray(limits) ? limits : [])
    .map((l): [unknown, unknown] => [own(l, 'name'), own(l, 'remaining')])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
}

/** What `available` says of an entity's limits: what a request for it could have changed. */
async function bucketsOf(entity: string, limits: readonly unknown[]) {
  const answer = await post('available', { entity, resource: MODEL, limits });
  return { status: answer.status, remaining: remainingOf(answer) };
}

/** The newest audit entry: an admin write that changed something adds one. */
async function auditHead() {
  const answer = await get('/v1/admin/audit', { limit: '1' });
  const items = own(answer.body, 'items');
  return Array.isArray(items) ? own(items[0], 'id') : answer.status;
}

const lease = (answer: Answer) => String(own(answer.body, 'lease_id'));

/** One request with hostile names in one place. */
interface Case {
  /** Whether the patterns accept every name in this place. */
  readonly accepted: boolean;
  /** The fields a 400 may name: where each refused name is. */
  readonly fields: readonly string[];
  /** What an accepted request may answer. */
  readonly ok: readonly number[];
  send(): Promise<Answer>;
  /** What the request could change, read back: the same after a refusal as before it. */
  state?(): Promise<unknown>;
  /** After a refusal: what still works as if the request had never come. */
  afterRefusal?(): Promise<{ got: unknown; want: unknown }>;
  /** For accepted names: what the answer (or what it stored) must say, exactly. */
  exact?(answer: Answer): Promise<{ got: unknown; want: unknown }>;
}

interface Place {
  readonly where: string;
  make(names: readonly string[], amount: number, n: number): Promise<Case>;
}

/** Whether `pattern` accepts every name, and the field of each one it refuses. */
function judge(
  names: readonly string[],
  pattern: RegExp,
  field: (name: string, i: number) => string,
): Pick<Case, 'accepted' | 'fields'> {
  return {
    accepted: names.every((name) => pattern.test(name)),
    fields: names.flatMap((name, i) => (pattern.test(name) ? [] : [field(name, i)])),
  };
}

/** A stored document must read back as it was sent. */
const storedAsSent = (sent: unknown) => async (answer: Answer) => ({
  got: own(answer.body, 'config'),
  want: sent,
});

/** A plan as the entity and plan places store it. */
const PLAN = {
  limits: [{ name: 'plan_rpm', metric: 'requests', limit: 1_000_000, per: 'minute' }],
};

/** Every place a user names something, route by route. */
const PLACES: readonly Place[] = [
  {
    where: 'POST /v1/acquire usage',
    make: async (names, amount, n) => ({
      ...judge(names, METRIC, (name) => `usage.${name}`),
      ok: [200],
      send: () =>
        post('acquire', {
          entity: `hn-${n}`,
          resource: MODEL,
          usage: usageOf(names, amount),
          limits: [RPM],
        }),
      state: () => bucketsOf(`hn-${n}`, [RPM]),
    }),
  },
  {
    where: 'POST /v1/acquire limits[].name',
    make: async (names, _, n) => {
      const limits = [RPM, ...names.map((name) => ({ ...RPM, name }))];
      return {
        ...judge(names, LIMIT_NAME, (_, i) => `limits[${i + 1}].name`),
        ok: [200],
        send: () => post('acquire', { entity: `hn-${n}`, resource: MODEL, usage: {}, limits }),
        state: () => bucketsOf(`hn-${n}`, [RPM]),
        exact: async (answer) => ({
          got: remainingOf(answer),
          want: ['rpm', ...names].sort().map((name) => [name, 999]),
        }),
      };
    },
  },
  {
    where: 'POST /v1/acquire limits[].metric',
    make: async (names, _, n) => {
      const limits = [RPM, ...names.map((metric, i) => ({ ...RPM, name: `m${i}`, metric }))];
      return {
        ...judge(names, METRIC, (_, i) => `limits[${i + 1}].metric`),
        ok: [200],
        send: () => post('acquire', { entity: `hn-${n}`, resource: MODEL, usage: {}, limits }),
        state: () => bucketsOf(`hn-${n}`, [RPM]),
      };
    },
  },
  {
    where: 'POST /v1/acquire entity',
    make: async ([name = '']) => ({
      ...judge([name], IDENTIFIER, () => 'entity'),
      ok: [200],
      send: () => post('acquire', { entity: name, resource: MODEL, usage: {}, limits: [RPM] }),
    }),
  },
  {
    where: 'POST /v1/acquire resource',
    make: async ([name = ''], _, n) => ({
      ...judge([name], IDENTIFIER, () => 'resource'),
      ok: [200],
      send: () => post('acquire', { entity: `hn-${n}`, resource: name, usage: {}, limits: [RPM] }),
      state: () => bucketsOf(`hn-${n}`, [RPM]),
    }),
  },
  {
    where: 'POST /v1/acquire fallback[]',
    make: async (names, _, n) => ({
      ...judge(names, IDENTIFIER, (_, i) => `fallback[${i}]`),
      ok: [200],
      send: () =>
        post('acquire', {
          entity: `hn-${n}`,
          resource: MODEL,
          usage: {},
          limits: [RPM],
          fallback: names,
        }),
      state: () => bucketsOf(`hn-${n}`, [RPM]),
    }),
  },
  {
    where: 'POST /v1/adjust usage',
    make: async (names, amount, n) => {
      const entity = `hn-${n}`;
      const acquired = await post('acquire', {
        entity,
        resource: MODEL,
        usage: { units: amount },
        limits: [CAP],
      });
      const id = lease(acquired);
      return {
        ...judge(names, METRIC, (name) => `usage.${name}`),
        ok: [200],
        send: () =>
          post('adjust', { lease_id: id, usage: { units: amount, ...usageOf(names, amount + 1) } }),
        state: () => bucketsOf(entity, [CAP]),
        afterRefusal: async () => {
          const again = await post('adjust', { lease_id: id, usage: { units: amount + 2 } });
          return {
            got: { status: again.status, usage: own(again.body, 'usage') },
            want: { status: 200, usage: { units: amount + 2, requests: 1 } },
          };
        },
        exact: async (answer) => ({
          got: { settled: own(answer.body, 'settled'), usage: own(answer.body, 'usage') },
          want: {
            settled: false,
            usage: { units: amount, requests: 1, ...usageOf(names, amount + 1) },
          },
        }),
      };
    },
  },
  {
    where: 'POST /v1/release usage',
    make: async (names, amount, n) => {
      const entity = `hn-${n}`;
      const acquired = await post('acquire', {
        entity,
        resource: MODEL,
        usage: { units: amount },
        limits: [CAP],
      });
      const id = lease(acquired);
      return {
        ...judge(names, METRIC, (name) => `usage.${name}`),
        ok: [200],
        send: () =>
          post('release', {
            lease_id: id,
            usage: { units: amount, ...usageOf(names, amount + 1) },
          }),
        state: () => bucketsOf(entity, [CAP]),
        afterRefusal: async () => {
          // Still open: it settles at other totals (a settled lease would answer 409).
          const again = await post('release', { lease_id: id, usage: { units: amount + 3 } });
          return {
            got: { status: again.status, usage: own(again.body, 'usage') },
            want: { status: 200, usage: { units: amount + 3, requests: 1 } },
          };
        },
        exact: async (answer) => ({
          got: { settled: own(answer.body, 'settled'), usage: own(answer.body, 'usage') },
          want: {
            settled: true,
            usage: { units: amount, requests: 1, ...usageOf(names, amount + 1) },
          },
        }),
      };
    },
  },
  {
    where: 'POST /v1/available usage',
    make: async (names, amount, n) => ({
      ...judge(names, METRIC, (name) => `usage.${name}`),
      ok: [200],
      send: () =>
        post('available', {
          entity: `hn-${n}`,
          resource: MODEL,
          usage: usageOf(names, amount),
          limits: [RPM],
        }),
    }),
  },
  {
    where: 'POST /v1/available limits[].name',
    make: async (names, _, n) => {
      const limits = [RPM, ...names.map((name) => ({ ...RPM, name }))];
      return {
        ...judge(names, LIMIT_NAME, (_, i) => `limits[${i + 1}].name`),
        ok: [200],
        send: () => post('available', { entity: `hn-${n}`, resource: MODEL, limits }),
        exact: async (answer) => ({
          got: remainingOf(answer),
          want: ['rpm', ...names].sort().map((name) => [name, 1_000]),
        }),
      };
    },
  },
  {
    where: 'POST /v1/available entity',
    make: async ([name = '']) => ({
      ...judge([name], IDENTIFIER, () => 'entity'),
      ok: [200],
      send: () => post('available', { entity: name, resource: MODEL, limits: [RPM] }),
    }),
  },
  {
    where: 'PUT /v1/admin/plans/{plan}',
    make: async ([name = '']) => ({
      ...judge([name], PLAN_NAME, () => 'plan'),
      ok: [200, 201],
      send: () => put(`plans/${name}`, PLAN),
      state: auditHead,
      exact: storedAsSent(PLAN),
    }),
  },
  {
    where: 'PUT /v1/admin/plans limits[].name',
    make: async (names, _, n) => {
      const plan = { limits: names.map((name) => ({ ...RPM, name })) };
      return {
        ...judge(names, LIMIT_NAME, (_, i) => `limits[${i}].name`),
        ok: [201],
        send: () => put(`plans/pl-${n}`, plan),
        state: auditHead,
        exact: storedAsSent(plan),
      };
    },
  },
  {
    where: 'PUT /v1/admin/plans limits[].metric',
    make: async (names, _, n) => {
      const plan = { limits: names.map((metric, i) => ({ ...RPM, name: `l${i}`, metric })) };
      return {
        ...judge(names, METRIC, (_, i) => `limits[${i}].metric`),
        ok: [201],
        send: () => put(`plans/pl-${n}`, plan),
        state: auditHead,
        exact: storedAsSent(plan),
      };
    },
  },
  {
    where: 'PUT /v1/admin/plans fallbacks keys',
    make: async (names, _, n) => {
      const plan = { fallbacks: Object.fromEntries(names.map((name) => [name, [`small-${n}`]])) };
      return {
        ...judge(names, IDENTIFIER, (name) => `fallbacks.${name}`),
        ok: [201],
        send: () => put(`plans/pl-${n}`, plan),
        state: auditHead,
        exact: storedAsSent(plan),
      };
    },
  },
  {
    where: 'PUT /v1/admin/plans fallbacks targets',
    make: async (names, _, n) => {
      const plan = { fallbacks: { [`big-${n}`]: names } };
      return {
        ...judge(names, IDENTIFIER, (_, i) => `fallbacks.big-${n}[${i}]`),
        ok: [201],
        send: () => put(`plans/pl-${n}`, plan),
        state: auditHead,
        exact: storedAsSent(plan),
      };
    },
  },
  {
    where: 'PUT /v1/admin/plans allowed_resources[]',
    make: async (names, _, n) => {
      const plan = { allowed_resources: names };
      return {
        ...judge(names, IDENTIFIER, (_, i) => `allowed_resources[${i}]`),
        ok: [201],
        send: () => put(`plans/pl-${n}`, plan),
        state: auditHead,
        exact: storedAsSent(plan),
      };
    },
  },
  {
    where: 'PUT /v1/admin/entities/{entity}',
    make: async ([name = '']) => ({
      ...judge([name], IDENTIFIER, () => 'entity'),
      ok: [200, 201],
      send: () => put(`entities/${name}`, {}),
      state: auditHead,
    }),
  },
  {
    where: 'PUT /v1/admin/entities plan',
    make: async ([name = ''], _, n) => {
      if (PLAN_NAME.test(name)) await put(`plans/${name}`, PLAN);
      return {
        ...judge([name], PLAN_NAME, () => 'plan'),
        ok: [201],
        send: () => put(`entities/en-${n}`, { plan: name }),
        state: auditHead,
        exact: storedAsSent({ plan: name }),
      };
    },
  },
  {
    where: 'PUT /v1/admin/entities parent',
    make: async ([name = ''], _, n) => {
      if (IDENTIFIER.test(name)) await put(`entities/${name}`, {});
      return {
        ...judge([name], IDENTIFIER, () => 'parent'),
        ok: [201],
        send: () => put(`entities/en-${n}`, { parent: name }),
        state: auditHead,
        exact: storedAsSent({ parent: name }),
      };
    },
  },
  {
    where: 'PUT /v1/admin/entities limits[].name',
    make: async (names, _, n) => {
      const entity = { limits: names.map((name) => ({ ...RPM, name })) };
      return {
        ...judge(names, LIMIT_NAME, (_, i) => `limits[${i}].name`),
        ok: [201],
        send: () => put(`entities/en-${n}`, entity),
        state: auditHead,
        exact: storedAsSent(entity),
      };
    },
  },
  {
    where: 'PUT /v1/admin/entities callers[] (the bare name)',
    make: async (names, _, n) => ({
      ...judge(names, CALLER, (_, i) => `callers[${i}]`),
      ok: [201],
      send: () => put(`entities/en-${n}`, { callers: names }),
      state: auditHead,
    }),
  },
  {
    where: 'PUT /v1/admin/entities callers[] (a role of that name)',
    make: async (names, _, n) => {
      const callers = names.map((name) => `arn:aws:iam::${ACCOUNT}:role/${name}`);
      const as = (role: string) => ({
        'x-sluice-principal': `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/session`,
      });
      const ask = { entity: `en-${n}`, resource: MODEL, usage: {}, limits: [RPM] };
      return {
        ...judge(names, /^[\w+=,.@-]+$/, (_, i) => `callers[${i}]`),
        ok: [201],
        send: () => put(`entities/en-${n}`, { callers }),
        state: auditHead,
        exact: async () => ({
          got: {
            named: (await post('acquire', ask, as(names[0] ?? ''))).status,
            other: own((await post('acquire', ask, as('someone-else'))).body, 'code'),
          },
          want: { named: 200, other: 'caller_not_allowed' },
        }),
      };
    },
  },
  {
    where: 'PUT /v1/admin/resources/{resource}',
    make: async ([name = '']) => ({
      ...judge([name], IDENTIFIER, () => 'resource'),
      ok: [200, 201],
      send: () => put(`resources/${name}`, {}),
      state: auditHead,
    }),
  },
  {
    where: 'PUT /v1/admin/resources limits[].name',
    make: async (names, _, n) => {
      const resource = { limits: names.map((name) => ({ ...RPM, name })) };
      return {
        ...judge(names, LIMIT_NAME, (_, i) => `limits[${i}].name`),
        ok: [201],
        send: () => put(`resources/rs-${n}`, resource),
        state: auditHead,
        exact: storedAsSent(resource),
      };
    },
  },
  {
    where: 'GET /v1/admin/{plans,entities,resources}/{name}',
    make: async ([name = ''], _, n) => {
      const kinds = [
        ['plans', PLAN_NAME, 'plan'],
        ['entities', IDENTIFIER, 'entity'],
        ['resources', IDENTIFIER, 'resource'],
      ] as const;
      const [kind, pattern, field] = kinds[n % kinds.length] ?? kinds[0];
      return {
        ...judge([name], pattern, () => field),
        ok: [200, 404],
        send: () => get(`/v1/admin/${kind}/${name}`),
      };
    },
  },
  {
    where: 'POST /v1/admin/entities/{entity}/reset',
    make: async ([name = '']) => ({
      ...judge([name], IDENTIFIER, () => 'entity'),
      ok: [200],
      send: () => call('POST', `/v1/admin/entities/${name}/reset`),
    }),
  },
  {
    where: 'GET /v1/usage entity=',
    make: async ([name = '']) => ({
      ...judge([name], IDENTIFIER, () => 'entity'),
      ok: [200],
      send: () => get('/v1/usage', { entity: name }),
    }),
  },
  {
    where: 'GET /v1/usage resource=',
    make: async ([name = ''], _, n) => ({
      ...judge([name], IDENTIFIER, () => 'resource'),
      ok: [200],
      send: () => get('/v1/usage', { entity: `hn-${n}`, resource: name }),
    }),
  },
  {
    where: 'GET /v1/usage with the name as a parameter',
    make: async (names, _, n) => ({
      ...judge(names, /^$/, (name) => name), // no such parameter
      ok: [200],
      send: () =>
        get('/v1/usage', { entity: `hn-${n}`, ...Object.fromEntries(names.map((k) => [k, '1'])) }),
    }),
  },
  {
    where: 'GET /v1/admin/usage/top metric=',
    make: async ([name = '']) => ({
      ...judge([name], METRIC, () => 'metric'),
      ok: [200],
      send: () => get('/v1/admin/usage/top', { metric: name }),
    }),
  },
  {
    where: 'GET /v1/admin/usage/top with the name as a parameter',
    make: async (names) => ({
      ...judge(names, /^$/, (name) => name),
      ok: [200],
      send: () => get('/v1/admin/usage/top', Object.fromEntries(names.map((k) => [k, '1']))),
    }),
  },
];

/** Usage history a tenant must end up with: per metric, leases, refusals per limit. */
interface History {
  readonly usage: Map<string, number>;
  leases: number;
  readonly denied: Map<string, number>;
}

const expected = new Map<string, History>();

function historyOf(entity: string): History {
  const known = expected.get(entity);
  if (known) return known;
  const fresh: History = { usage: new Map(), leases: 0, denied: new Map() };
  expected.set(entity, fresh);
  return fresh;
}

/** A lease that counts: what it settled at (with its one request). */
function counts(entity: string, usage: Readonly<Record<string, number>>) {
  const history = historyOf(entity);
  for (const [metric, n] of Object.entries({ ...usage, requests: 1 }))
    history.usage.set(metric, (history.usage.get(metric) ?? 0) + n);
  history.leases++;
}

function refused(entity: string, limit: string) {
  const history = historyOf(entity);
  history.denied.set(limit, (history.denied.get(limit) ?? 0) + 1);
}

/** Adds a usage row's counts to `sums`; what is not a number is kept as it came, to be seen. */
function addTo(sums: Map<string, unknown>, row: unknown) {
  for (const [k, v] of Object.entries(row ?? {})) {
    const sum = sums.get(k) ?? 0;
    sums.set(k, typeof v === 'number' && typeof sum === 'number' ? sum + v : v);
  }
}

/** A normal tenant, busy before and after the hostile calls. */
const CALM = 'calm-tenant';

async function calmCall(input: number, output: number) {
  const acquired = await post('acquire', {
    entity: CALM,
    resource: MODEL,
    usage: { input_tokens: input * 2, output_tokens: output * 2 },
    limits: [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }],
  });
  expect(acquired.status).toBe(200);
  const final = { input_tokens: input, output_tokens: output };
  const released = await post('release', { lease_id: lease(acquired), usage: final });
  expect(released.status).toBe(200);
  counts(CALM, { ...final, tokens: input + output });
}

const ACCEPTED_METRICS = HOSTILE.filter((name) => METRIC.test(name));
const ACCEPTED_LIMIT_NAMES = HOSTILE.filter((name) => LIMIT_NAME.test(name));

describe('names every object already has', () => {
  beforeAll(async () => {
    await calmCall(120, 30);
  });

  it('get a success or a 4xx naming the field on every route, never a 5xx; a refused name is a 400 that changes nothing', async () => {
    type Sample = { place: Place; names: string[]; amount: number };
    const sample = fc.record({
      place: fc.constantFrom(...PLACES),
      names: fc.uniqueArray(fc.constantFrom(...HOSTILE), { minLength: 1, maxLength: 3 }),
      amount: fc.integer({ min: 1, max: 40 }),
    });
    // Every name in every place once, then mixes of names (examples count among the runs).
    const examples = PLACES.flatMap((place) =>
      HOSTILE.map((name): [Sample] => [{ place, names: [name], amount: 7 }]),
    );
    const problems: string[] = [];
    let n = 0;

    await fc.assert(
      fc.asyncProperty(sample, async ({ place, names, amount }) => {
        const c = await place.make(names, amount, ++n);
        const label = `${place.where} [${names.join(', ')}]`;
        const before = !c.accepted && c.state ? await c.state() : undefined;
        const answer = await c.send();
        const body = JSON.stringify(answer.body, (k, v) => (k === 'lease_id' ? '…' : v));
        const said = `${answer.status} ${body.slice(0, 240)}`;
        const type = answer.headers.get('content-type') ?? '';
        const field = own(answer.body, 'field');

        if (answer.status >= 400 && !type.startsWith('application/problem+json'))
          problems.push(`${label}: ${answer.status} is not problem+json (${type})`);
        if (!c.accepted) {
          if (answer.status !== 400 || !c.fields.includes(String(field)))
            problems.push(
              `${label}: refused name, want 400 naming ${c.fields.join(' or ')}: ${said}`,
            );
          const after = c.state ? await c.state() : undefined;
          if (canonical(after) !== canonical(before))
            problems.push(
              `${label}: refused, yet it changed ${JSON.stringify(before)} to ${JSON.stringify(after)}`,
            );
          const still = await c.afterRefusal?.();
          if (still && canonical(still.got) !== canonical(still.want))
            problems.push(
              `${label}: after the refusal, want ${JSON.stringify(still.want)}, got ${JSON.stringify(still.got)}`,
            );
        } else if (!c.ok.includes(answer.status)) {
          problems.push(`${label}: accepted name, want ${c.ok.join(' or ')}: ${said}`);
        } else if (c.exact) {
          const { got, want } = await c.exact(answer);
          if (canonical(got) !== canonical(want))
            problems.push(`${label}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
        }
        return true;
      }),
      { seed: 20_261_207, numRuns: examples.length + 60, examples, endOnFailure: true },
    );

    expect(problems).toEqual([]);
  });

  it('charge, settle and refuse exactly with a metric and a limit of such a name', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ACCEPTED_METRICS),
        fc.constantFrom(...ACCEPTED_LIMIT_NAMES),
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 0, max: 60 }),
        async (metric, name, estimate, more, final) => {
          const entity = `exact-${++n}`;
          const limits = [{ name, metric, limit: 100, per: PER }];
          const ask = { entity, resource: MODEL, limits };
          const limit = (answer: Answer) => [answer.status, remainingOf(answer)];
          const settled = (answer: Answer) => [
            answer.status,
            own(answer.body, 'settled'),
            own(answer.body, 'usage'),
            remainingOf(answer),
          ];

          const acquired = await post('acquire', { ...ask, usage: { [metric]: estimate } });
          expect(limit(acquired)).toEqual([200, [[name, 100 - estimate]]]);
          const id = lease(acquired);
          const adjusted = await post('adjust', {
            lease_id: id,
            usage: { [metric]: estimate + more },
          });
          expect(settled(adjusted)).toEqual([
            200,
            false,
            { [metric]: estimate + more, requests: 1 },
            [[name, 100 - estimate - more]],
          ]);
          const released = await post('release', { lease_id: id, usage: { [metric]: final } });
          expect(settled(released)).toEqual([
            200,
            true,
            { [metric]: final, requests: 1 },
            [[name, 100 - final]],
          ]);
          counts(entity, { [metric]: final });

          // Exactly at the limit: the rest fits, one more does not.
          const rest = await post('acquire', { ...ask, usage: { [metric]: 100 - final } });
          expect(limit(rest)).toEqual([200, [[name, 0]]]);
          counts(entity, { [metric]: 100 - final });
          const over = await post('acquire', { ...ask, usage: { [metric]: 1 } });
          const violations = own(over.body, 'violations');
          expect([over.status, violations]).toEqual([
            429,
            [
              expect.objectContaining({
                scope: 'entity',
                name,
                metric,
                remaining: 0,
                requested: 1,
              }),
            ],
          ]);
          refused(entity, name);
        },
      ),
      { seed: 20_261_208, numRuns: 20, endOnFailure: true },
    );
  });

  it('enforce stored limits of such names (plan, entity, resource) exactly at their limits', async () => {
    const plan = { limits: [{ name: 'toString', metric: 'call', limit: 10, per: PER }] };
    const entity = {
      plan: 'constructor',
      limits: [{ name: 'hasOwnProperty', metric: 'apply', limit: 5, per: PER }],
    };
    const resource = {
      limits: [{ name: 'isPrototypeOf', metric: 'requests', limit: 2, per: PER }],
    };
    expect((await put('plans/constructor', plan)).status).toBeLessThan(300);
    expect((await put('entities/stored-tenant', entity)).status).toBe(201);
    expect((await put('resources/stored-model', resource)).status).toBe(201);
    const ask = (usage: Record<string, number>) =>
      post('acquire', { entity: 'stored-tenant', resource: 'stored-model', usage });

    const first = await ask({ call: 4, apply: 2 });
    const tooMuchCall = await ask({ call: 7 });
    const tooMuchApply = await ask({ apply: 4 });
    const second = await ask({ call: 6, apply: 3 });
    const third = await ask({});

    expect(remainingOf(first)).toEqual([
      ['hasOwnProperty', 3],
      ['isPrototypeOf', 1],
      ['toString', 6],
    ]);
    expect([tooMuchCall.status, own(tooMuchCall.body, 'violations')]).toEqual([
      429,
      [expect.objectContaining({ name: 'toString', remaining: 6, requested: 7 })],
    ]);
    expect([tooMuchApply.status, own(tooMuchApply.body, 'violations')]).toEqual([
      429,
      [expect.objectContaining({ name: 'hasOwnProperty', remaining: 3, requested: 4 })],
    ]);
    expect(remainingOf(second)).toEqual([
      ['hasOwnProperty', 0],
      ['isPrototypeOf', 0],
      ['toString', 0],
    ]);
    expect([third.status, own(third.body, 'violations')]).toEqual([
      429,
      [expect.objectContaining({ scope: 'resource', name: 'isPrototypeOf', remaining: 0 })],
    ]);
    counts('stored-tenant', { call: 4, apply: 2 });
    counts('stored-tenant', { call: 6, apply: 3 });
    refused('stored-tenant', 'toString');
    refused('stored-tenant', 'hasOwnProperty');
    refused('stored-tenant', 'resource.isPrototypeOf');
  });

  it('fire budget alerts for quotas named constructor and toString', async () => {
    const quota = { metric: 'tokens', limit: 1_000, window: 'month', alerts: [0.5] };
    const limits = [
      { ...quota, name: 'constructor' },
      { ...quota, name: 'toString', metric: 'constructor' },
    ];
    expect((await put('entities/alerted-tenant', { limits })).status).toBe(201);
    const usage = { tokens: 600, constructor: 600 };
    const acquired = await post('acquire', { entity: 'alerted-tenant', resource: MODEL, usage });
    expect(acquired.status).toBe(200);
    counts('alerted-tenant', usage);

    const listed = async () => {
      const items = own((await get('/v1/admin/alerts')).body, 'items');
      return (Array.isArray(items) ? items : [])
        .filter((a) => own(a, 'entity') === 'alerted-tenant')
        .map((a) => ({
          limit: own(a, 'limit'),
          threshold: own(a, 'threshold'),
          limit_value: own(a, 'limit_value'),
          delivered: own(a, 'delivered'),
        }))
        .sort((a, b) => String(a.limit).localeCompare(String(b.limit)));
    };
    const want = ['constructor', 'toString'].map((limit) => ({
      limit,
      threshold: 0.5,
      limit_value: 1_000,
      delivered: true,
    }));
    await expect.poll(listed, { timeout: 30_000, interval: 250 }).toEqual(want);
    expect(
      webhook
        .filter((a) => a.detail.entity === 'alerted-tenant')
        .map((a) => [a.detail.limit, a.detail.threshold])
        .sort(),
    ).toEqual([
      ['constructor', 0.5],
      ['toString', 0.5],
    ]);
  });

  it('keeps usage history exact for everyone: the aggregator never stops on a hostile batch', async () => {
    await calmCall(200, 80); // after every hostile call, behind them on the stream

    /** The usage history of every tenant with expectations, summed over its months. */
    const histories = async () => {
      const out: Record<string, unknown> = {};
      for (const entity of [...expected.keys()].sort()) {
        const answer = await get('/v1/usage', { entity, granularity: 'month' });
        const usage = new Map<string, unknown>();
        const denied = new Map<string, unknown>();
        let leases = 0;
        const items = own(answer.body, 'items');
        for (const item of Array.isArray(items) ? items : []) {
          addTo(usage, own(item, 'usage'));
          addTo(denied, own(item, 'denied'));
          leases += Number(own(item, 'leases') ?? 0);
        }
        out[entity] = { status: answer.status, ...shown({ usage, leases, denied }) };
      }
      return out;
    };
    const shown = (
      h: Pick<History, 'leases'> & Record<'usage' | 'denied', Map<string, unknown>>,
    ) => ({
      usage: Object.fromEntries([...h.usage].sort()),
      leases: h.leases,
      denied: Object.fromEntries([...h.denied].sort()),
    });
    const want = Object.fromEntries(
      [...expected.keys()].sort().map((entity) => {
        const history = historyOf(entity);
        return [entity, { status: 200, ...shown(history) }];
      }),
    );

    try {
      await expect.poll(histories, { timeout: 30_000, interval: 250 }).toEqual(want);
    } finally {
      // What the server logged as failed (the aggregator retrying a batch, a 5xx), once each.
      const failures = api
        .output()
        .split('\n')
        .filter((line) => line.includes('"level":"ERROR"'))
        .map((line) => line.replace(/"timestamp":"[^"]*",?/, '').slice(0, 400));
      expect.soft([...new Set(failures)]).toEqual([]);
    }

    // Ranked by a metric of such a name: exactly the tenants that used it, most first.
    const ranked = [...expected]
      .map(([entity, history]) => [entity, history.usage.get('constructor') ?? 0] as const)
      .filter(([, used]) => used > 0)
      .sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
    const top = async () => {
      const query = { metric: 'constructor', period: 'month', limit: '50' };
      const items = own((await get('/v1/admin/usage/top', query)).body, 'items');
      return (Array.isArray(items) ? items : [])
        .map((item) => [own(item, 'entity'), own(own(item, 'usage'), 'constructor')])
        .filter(([entity]) => expected.has(String(entity)));
    };
    await expect.poll(top, { timeout: 10_000, interval: 250 }).toEqual(ranked);
  });
});

describe('a body nested deeper than 16 levels', () => {
  /** A body whose `limits` holds `arrays` arrays one in another: 1 + `arrays` levels deep. */
  const nested = (arrays: number) =>
    `{"entity":"deep-body","resource":"m","usage":{},"limits":${'['.repeat(arrays)}${']'.repeat(arrays)}}`;
  /** Where the 17th level starts: the 16th array of `limits`. */
  const tooDeep = `limits${'[0]'.repeat(15)}`;

  it('is a 400 problem+json naming where it goes too deep, on every route that takes a body', async () => {
    const body = nested(10_000); // 20 KB: well under the size limit
    const answers: [string, Answer][] = [];
    for (const route of ['acquire', 'adjust', 'release', 'available'])
      answers.push([route, await post(route, body)]);
    answers.push(['admin', await put('plans/deep-body', body)]);
    const sixteen = await post('acquire', nested(15));
    const seventeen = await post('acquire', nested(16));

    for (const [route, answer] of answers) {
      expect(answer.status, route).toBe(400);
      expect(answer.headers.get('content-type'), route).toBe('application/problem+json');
      expect(answer.body, route).toMatchObject({ code: 'invalid_request', field: tooDeep });
      expect(answer.body.detail, route).toMatch(/nested more than 16 levels deep/);
    }
    // 16 levels are judged by the schema (an array is no limit); the 17th is refused for depth.
    expect(sixteen).toMatchObject({ status: 400, body: { field: 'limits[0]' } });
    expect(seventeen).toMatchObject({ status: 400, body: { field: tooDeep } });
    // The server keeps answering, and stored nothing.
    const after = await post('acquire', {
      entity: 'deep-body',
      resource: MODEL,
      usage: {},
      limits: [RPM],
    });
    expect(after.status).toBe(200);
    expect((await get('/v1/admin/plans/deep-body')).status).toBe(404);
  });
});
