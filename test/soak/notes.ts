/**
 * What the soak keeps of each exchange its taps and its fault proxy see: of a client request,
 * what it asked and what the server decided; of a DynamoDB write, what it did to each quota's
 * `used` amount (the attributes `u_<name>`; see the table schema), so the writes that applied can
 * be replayed into a ledger and compared with the table.
 */
import type { Usage } from '@sluice/client';
import type { TapAnswer, TapRequest } from './api-tap.js';
import { leaseKey } from './workload.js';

export interface AcquireNote {
  readonly entity: string;
  readonly resource: string;
  readonly usage: Usage;
  readonly fallback: readonly string[];
  readonly maxWaitMs: number;
  /** On a 200: the resource admitted and the lease. */
  readonly admitted?: string;
  readonly lease?: string;
  /** The id inside the lease token (what the usage events on the table name), if readable. */
  readonly id?: string;
}

export interface SettleNote {
  readonly lease: string;
  /** null: a release without usage (everything given back). */
  readonly usage: Usage | null;
  readonly release: boolean;
}

/** Of a 5xx answer: what a client needs to back off. */
export interface ProblemNote {
  readonly contentType?: string;
  readonly retryAfter?: string;
  readonly code?: string;
}

export interface TapNote {
  /** The path without its query. */
  readonly route: string;
  readonly acquire?: AcquireNote;
  readonly settle?: SettleNote;
  readonly problem?: ProblemNote;
}

function json(text: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * The id a lease token carries (a token is `base64url(claims).signature`, the claims naming
 * their id `i`), to tell which usage events on the table belong to leases a server issued.
 * Used to explain differences, never to decide a check.
 */
function idOf(token: string): { id?: string } {
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8'));
    return typeof claims?.i === 'string' ? { id: claims.i } : {};
  } catch {
    return {};
  }
}

/** The tap's `inspect`: the request's gist and the server's decision. */
export function tapNote(request: TapRequest, answer: TapAnswer | undefined): TapNote {
  const route = request.path.split('?')[0] ?? request.path;
  const body = json(request.body);
  const reply = answer ? json(answer.body) : {};
  const problem =
    answer && answer.status >= 500
      ? {
          problem: {
            ...(answer.headers['content-type']
              ? { contentType: answer.headers['content-type'] }
              : {}),
            ...(answer.headers['retry-after']
              ? { retryAfter: String(answer.headers['retry-after']) }
              : {}),
            ...(typeof reply.code === 'string' ? { code: reply.code } : {}),
          },
        }
      : {};
  if (route === '/v1/acquire') {
    const admitted = answer?.status === 200 && typeof reply.lease_id === 'string';
    return {
      route,
      acquire: {
        entity: String(body.entity),
        resource: String(body.resource),
        usage: (body.usage ?? {}) as Usage,
        fallback: Array.isArray(body.fallback) ? (body.fallback as string[]) : [],
        maxWaitMs: typeof body.max_wait_ms === 'number' ? body.max_wait_ms : 0,
        ...(admitted
          ? {
              admitted: typeof reply.resource === 'string' ? reply.resource : String(body.resource),
              lease: leaseKey(reply.lease_id as string),
              ...idOf(reply.lease_id as string),
            }
          : {}),
      },
      ...problem,
    };
  }
  if ((route === '/v1/adjust' || route === '/v1/release') && typeof body.lease_id === 'string') {
    return {
      route,
      settle: {
        lease: leaseKey(body.lease_id),
        usage: (body.usage as Usage | undefined) ?? null,
        release: route === '/v1/release',
      },
      ...problem,
    };
  }
  return { route, ...problem };
}

/** One change a write makes to a quota's used amount. */
export interface LedgerOp {
  /** `pk|sk` */
  readonly item: string;
  /** `u_<name>` */
  readonly attr: string;
  readonly op: 'add' | 'set';
  readonly value: number;
}

/**
 * A usage event an acquire leaves on the first item it writes: which lease (its id inside the
 * token), which version (0: charged, -1: given back), what it counts and for whom.
 */
export interface LeaseEvent {
  readonly item: string;
  readonly lease: string;
  readonly version: number;
  readonly usage: Usage;
  /** The entity and its ancestors. */
  readonly entities: readonly string[];
}

/** What the soak keeps of a DynamoDB write. */
export interface WriteNote {
  readonly ops: readonly LedgerOp[];
  readonly events: readonly LeaseEvent[];
}

interface WireUpdate {
  readonly Key?: Record<string, { S?: string }>;
  readonly UpdateExpression?: string;
  readonly ExpressionAttributeNames?: Record<string, string>;
  readonly ExpressionAttributeValues?: Record<string, { N?: string; S?: string }>;
}

/** Splits `a, f(b, c), d` at its top-level commas. */
function topLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(text.slice(start).trim());
  return parts;
}

function noteOf(update: WireUpdate): WriteNote {
  const expression = update.UpdateExpression ?? '';
  const names = update.ExpressionAttributeNames ?? {};
  const values = update.ExpressionAttributeValues ?? {};
  const item = `${update.Key?.pk?.S ?? '?'}|${update.Key?.sk?.S ?? '?'}`;
  const set = /^SET (.*?)(?: REMOVE .*)?$/.exec(expression)?.[1];
  const ops: LedgerOp[] = [];
  const events: LeaseEvent[] = [];
  if (!set) return { ops, events };
  for (const assignment of topLevel(set)) {
    const match = /^(#\w+) = (.*)$/.exec(assignment);
    if (!match) continue;
    const [, name = '', rhs = ''] = match;
    const attr = names[name];
    if (attr === 'ev' && /^:\w+$/.test(rhs)) {
      // [lease id, version, acquired at, expires at, usage, context]
      try {
        const [lease, version, , , usage, context] = JSON.parse(values[rhs]?.S ?? '[]') as [
          string,
          number,
          number,
          number,
          Usage,
          [string, [string, string?][]],
        ];
        if (typeof lease === 'string')
          events.push({
            item,
            lease,
            version,
            usage: usage ?? {},
            entities: (context?.[1] ?? []).map(([entity]) => entity),
          });
      } catch {
        // not an event this ledger knows
      }
      continue;
    }
    if (!attr?.startsWith('u_')) continue;
    const add = /^(#\w+) \+ (:\w+)$/.exec(rhs);
    const number = (placeholder: string) => Number(values[placeholder]?.N ?? Number.NaN);
    if (add?.[1] === name && add[2]) ops.push({ item, attr, op: 'add', value: number(add[2]) });
    else if (/^:\w+$/.test(rhs)) ops.push({ item, attr, op: 'set', value: number(rhs) });
    else ops.push({ item, attr, op: 'set', value: Number.NaN }); // a form the ledger cannot replay
  }
  return { ops, events };
}

/** The fault proxy's `inspect`: what a write does to quotas' used amounts, and whose event it carries. */
export function ledgerNote(target: string, body: string): WriteNote | undefined {
  const operation = target.slice(target.indexOf('.') + 1);
  if (operation !== 'UpdateItem' && operation !== 'TransactWriteItems') return undefined;
  const parsed = json(body);
  const updates =
    operation === 'UpdateItem'
      ? [parsed as WireUpdate]
      : ((parsed.TransactItems ?? []) as { Update?: WireUpdate }[]).flatMap((t) =>
          t.Update ? [t.Update] : [],
        );
  const notes = updates.map(noteOf);
  const ops = notes.flatMap((n) => n.ops);
  const events = notes.flatMap((n) => n.events);
  return ops.length > 0 || events.length > 0 ? { ops, events } : undefined;
}
