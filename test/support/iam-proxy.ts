/**
 * DynamoDB behind a function's own IAM statements: a proxy in front of DynamoDB Local that
 * allows a data-plane request only if one of the statements synthesized for that function's
 * role allows its action on the table with all its partition keys (`ForAllValues:StringLike`
 * on `dynamodb:LeadingKeys`) and no Deny among them names it (`ForAnyValue:StringEquals`), as
 * IAM does. A transaction is authorized item by item as the
 * action of each of its parts. A BatchGetItem is authorized whole, as IAM does: one statement
 * must allow `dynamodb:BatchGetItem` with every partition key the batch reads (its
 * `dynamodb:LeadingKeys` are all of them). Refused requests get DynamoDB's
 * AccessDeniedException.
 *
 * Table management (DescribeTable, CreateTable, UpdateTimeToLive) passes: in AWS the stack
 * creates the table and no function does.
 */
import { createServer, type Server } from 'node:http';

/** One IAM statement as synthesized. */
export interface Statement {
  readonly Effect?: string;
  readonly Action: string | readonly string[];
  readonly Resource: unknown;
  readonly Condition?: Record<string, Record<string, string | readonly string[]>>;
}

/** What one request (or one part of a transaction) asks for. */
export interface Access {
  readonly action: string;
  readonly pk?: string;
}

const MANAGEMENT = new Set(['DescribeTable', 'CreateTable', 'UpdateTimeToLive', 'UpdateTable']);

/**
 * Reads of the table's stream (DynamoDB Streams): granted on the stream's ARN, which only the
 * event source mapping's role needs, so they are allowed when any statement names the action.
 */
const STREAM_READS = new Set(['DescribeStream', 'GetShardIterator', 'GetRecords', 'ListStreams']);

/** IAM's `StringLike`: `*` any run of characters, `?` one, everything else literal. */
export const like = (pattern: string, value: string): boolean =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  ).test(value);

/** Whether `statements` allow `access` on the table they name (`tableResource`). */
export function allows(
  statements: readonly Statement[],
  tableResource: unknown,
  access: Access,
): boolean {
  return allowsTogether(statements, tableResource, [access]);
}

/**
 * Whether a Deny statement's condition holds for `access`: none (it denies all), or
 * `ForAnyValue:StringEquals` on `dynamodb:LeadingKeys` naming its partition key exactly.
 */
function denies(statement: Statement, access: Access): boolean {
  if (statement.Condition === undefined) return true;
  const exact = statement.Condition['ForAnyValue:StringEquals']?.['dynamodb:LeadingKeys'];
  if (exact === undefined) throw new Error('iam-proxy: a Deny condition it cannot evaluate');
  return access.pk !== undefined && [exact].flat().includes(access.pk);
}

/**
 * Whether one of `statements` allows every one of `accesses` (one request's, as IAM sees a
 * BatchGetItem: `ForAllValues` holds when every partition key it reads matches the statement).
 */
export function allowsTogether(
  statements: readonly Statement[],
  tableResource: unknown,
  accesses: readonly Access[],
): boolean {
  // An explicit Deny wins: one that names the action and any of the request's keys.
  const denied = statements.some(
    (s) =>
      s.Effect === 'Deny' &&
      JSON.stringify(s.Resource) === JSON.stringify(tableResource) &&
      accesses.some((access) => [s.Action].flat().includes(access.action) && denies(s, access)),
  );
  if (denied) return false;
  return statements.some((s) => {
    if (s.Effect !== undefined && s.Effect !== 'Allow') return false;
    if (JSON.stringify(s.Resource) !== JSON.stringify(tableResource)) return false;
    const keys = s.Condition?.['ForAllValues:StringLike']?.['dynamodb:LeadingKeys'];
    return accesses.every((access) => {
      if (![s.Action].flat().includes(access.action)) return false;
      if (keys === undefined) return true;
      if (access.pk === undefined) return false;
      return [keys].flat().some((pattern) => like(pattern, access.pk as string));
    });
  });
}

type AttributeMap = Record<string, { S?: string }>;
interface Body {
  Key?: AttributeMap;
  Item?: AttributeMap;
  KeyConditionExpression?: string;
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: AttributeMap;
  TransactItems?: Record<string, { Key?: AttributeMap; Item?: AttributeMap }>[];
  RequestItems?: Record<string, { Keys?: AttributeMap[] }>;
}

/** The keys a BatchGetItem reads, from every table it names. */
const batchKeys = (body: Body): AttributeMap[] =>
  Object.values(body.RequestItems ?? {}).flatMap((table) => table.Keys ?? []);

/** What a DynamoDB request asks for: its action(s) and the partition key of each item. */
export function accessOf(operation: string, body: Body): Access[] {
  const pkOf = (map: AttributeMap | undefined) => map?.pk?.S;
  switch (operation) {
    case 'TransactWriteItems': {
      const actions: Record<string, string> = {
        Update: 'dynamodb:UpdateItem',
        Put: 'dynamodb:PutItem',
        Delete: 'dynamodb:DeleteItem',
        ConditionCheck: 'dynamodb:ConditionCheckItem',
      };
      return (body.TransactItems ?? []).flatMap((part) =>
        Object.entries(part).map(([kind, item]) => {
          const pk = pkOf(item.Key ?? item.Item);
          return { action: actions[kind] ?? `dynamodb:${kind}`, ...(pk ? { pk } : {}) };
        }),
      );
    }
    case 'BatchGetItem':
      return batchKeys(body).map((key) => {
        const pk = pkOf(key);
        return { action: 'dynamodb:BatchGetItem', ...(pk ? { pk } : {}) };
      });
    case 'Query': {
      // `#n = :v` on the partition key: find the value bound to it.
      const match = /(#\w+|pk)\s*=\s*(:\w+)/.exec(body.KeyConditionExpression ?? '');
      const name = match?.[1]?.startsWith('#')
        ? body.ExpressionAttributeNames?.[match[1]]
        : match?.[1];
      const pk =
        name === 'pk' && match?.[2] ? body.ExpressionAttributeValues?.[match[2]]?.S : undefined;
      return [{ action: 'dynamodb:Query', ...(pk ? { pk } : {}) }];
    }
    default: {
      const pk = pkOf(body.Key ?? body.Item);
      return [{ action: `dynamodb:${operation}`, ...(pk ? { pk } : {}) }];
    }
  }
}

/** One request forwarded: when it arrived and when its answer was sent (performance.now()). */
export interface Exchange {
  readonly operation: string;
  /** The partition key of the item it reads or writes (none for a transaction). */
  readonly pk?: string;
  /** Its sort key, likewise. */
  readonly sk?: string;
  /** The keys of the items a BatchGetItem reads, in the order it names them. */
  readonly keys?: readonly ReadKey[];
  readonly startMs: number;
  readonly endMs: number;
}

/** An item's key as a request names it. */
export interface ReadKey {
  readonly pk: string;
  readonly sk: string;
}

/** The items a request read: a GetItem's one, each of a BatchGetItem's; none for any other. */
export function keysRead(exchange: Exchange): ReadKey[] {
  if (exchange.operation === 'GetItem') return [{ pk: exchange.pk ?? '', sk: exchange.sk ?? '' }];
  return exchange.operation === 'BatchGetItem' ? [...(exchange.keys ?? [])] : [];
}

/**
 * How many rounds of round trips the exchanges took: each one's depth is 1 + the deepest of
 * those answered before it arrived. (Hold answers back with `delayMs` so that requests sent
 * together overlap for certain.)
 */
export function roundsOf(exchanges: readonly Exchange[]): number {
  const depth = new Map<Exchange, number>();
  for (const exchange of [...exchanges].sort((a, b) => a.startMs - b.startMs)) {
    const before = exchanges.filter((e) => e.endMs <= exchange.startMs);
    depth.set(exchange, 1 + Math.max(0, ...before.map((e) => depth.get(e) ?? 0)));
  }
  return Math.max(0, ...depth.values());
}

/**
 * A running proxy; `denied` and `allowed` list every access it saw, `exchanges` every request it
 * forwarded, for the test to read.
 */
export interface IamProxy {
  readonly url: string;
  readonly denied: Access[];
  readonly allowed: Access[];
  readonly exchanges: Exchange[];
  /** How long each answer is held back (0 unless a test sets it): a slower, regional DynamoDB. */
  delayMs: number;
  /**
   * The next `count` requests whose body matches: forwarded (and applied) at once, their answer
   * held back `ms` (Infinity: never sent, a connection that hangs).
   */
  hold(body: RegExp, ms: number, count?: number): void;
  /** How many requests have been held so far. */
  held(): number;
  close(): Promise<void>;
}

/** Serves DynamoDB's JSON protocol on 127.0.0.1, enforcing `statements`, forwarding to `upstream`. */
export async function startIamProxy(
  statements: readonly Statement[],
  tableResource: unknown,
  upstream: string,
): Promise<IamProxy> {
  const denied: Access[] = [];
  const allowed: Access[] = [];
  const exchanges: Exchange[] = [];
  let rule: { body: RegExp; ms: number; count: number } | undefined;
  /** What a request asks for that the statements do not allow: a batch is allowed whole or not. */
  const refusedOf = (operation: string, accesses: Access[]): Access[] => {
    if (operation !== 'BatchGetItem')
      return accesses.filter((access) => !allows(statements, tableResource, access));
    return allowsTogether(statements, tableResource, accesses) ? [] : accesses;
  };
  let held = 0;
  const server: Server = createServer(async (req, res) => {
    const startMs = performance.now();
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const target = String(req.headers['x-amz-target'] ?? '');
    const operation = target.split('.')[1] ?? '';
    const streamRead = STREAM_READS.has(operation);
    if (
      streamRead &&
      !statements.some((st) => [st.Action].flat().includes(`dynamodb:${operation}`))
    ) {
      denied.push({ action: `dynamodb:${operation}` });
      res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' });
      res.end(JSON.stringify({ __type: 'com.amazon.coral.service#AccessDeniedException' }));
      return;
    }
    if (!MANAGEMENT.has(operation) && !streamRead) {
      const accesses = accessOf(operation, JSON.parse(raw.toString('utf8') || '{}') as Body);
      const refused = refusedOf(operation, accesses);
      if (refused.length === 0) allowed.push(...accesses);
      if (refused.length > 0) {
        denied.push(...refused);
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0' });
        res.end(
          JSON.stringify({
            __type: 'com.amazon.coral.service#AccessDeniedException',
            message: `not authorized to perform ${refused.map((a) => `${a.action} on ${a.pk ?? 'the table'}`).join(', ')}`,
          }),
        );
        return;
      }
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string' && name !== 'host' && name !== 'content-length')
        headers[name] = value;
    }
    if (proxy.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, proxy.delayMs));
    const answer = await fetch(upstream, { method: 'POST', headers, body: raw });
    if (rule && rule.count > 0 && rule.body.test(raw.toString('utf8'))) {
      const { ms } = rule;
      rule.count -= 1;
      held += 1;
      if (ms === Number.POSITIVE_INFINITY) return; // applied, never answered
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
    res.writeHead(answer.status, {
      'content-type': answer.headers.get('content-type') ?? 'application/x-amz-json-1.0',
    });
    res.end(Buffer.from(await answer.arrayBuffer()));
    const body = JSON.parse(raw.toString('utf8') || '{}') as Body;
    const [pk, sk] = [body.Key?.pk?.S, body.Key?.sk?.S];
    exchanges.push({
      operation,
      ...(pk ? { pk } : {}),
      ...(sk ? { sk } : {}),
      ...(body.RequestItems
        ? { keys: batchKeys(body).map((key) => ({ pk: key.pk?.S ?? '', sk: key.sk?.S ?? '' })) }
        : {}),
      startMs,
      endMs: performance.now(),
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const proxy: IamProxy = {
    url: `http://127.0.0.1:${port}`,
    denied,
    allowed,
    exchanges,
    delayMs: 0,
    hold: (body, ms, count = 1) => {
      rule = { body, ms, count };
    },
    held: () => held,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return proxy;
}

/** A proxy that allows every action a Sluice server sends: to record what it sends. */
export function startRecorder(upstream: string): Promise<IamProxy> {
  const everything: Statement = {
    Action: [
      ['GetItem', 'BatchGetItem', 'UpdateItem', 'ConditionCheckItem', 'Query', 'DeleteItem'],
      ['PutItem', 'DescribeStream', 'GetShardIterator', 'GetRecords', 'ListStreams'],
    ]
      .flat()
      .map((action) => `dynamodb:${action}`),
    Resource: 'table',
  };
  return startIamProxy([everything], 'table', upstream);
}
