/**
 * The CLI's command line: its options, and one handler per command (plan, apply, get, audit,
 * usage, top, alerts, rotate-key, console). A handler prints through the invocation's `out` and `err` and
 * resolves to the exit code; it throws a {@link UsageError} for a wrong command line, and lets
 * the client's errors through: main.ts turns them into messages and exit codes.
 */

import { parseArgs } from 'node:util';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { COLLECTIONS, type ConfigKind, type SluiceAdmin, SluiceClient } from '@sluice/client';
import type { Credentials } from '@sluice/client/signing';
import { storedConfigToWire } from '@sluice/client/wire';
import { own, SERVICE_DEFAULTS } from '@sluice/core/internal';
import { CONSOLE_PORT, startConsoleProxy } from './console.js';
import { applyChanges, type Change, planChanges, pruned } from './diff.js';
import { CliError, UsageError } from './errors.js';
import { loadFile } from './file.js';
import { topTable, usageTable } from './tables.js';

const KINDS: readonly string[] = Object.keys(COLLECTIONS);
const MAX_AUDIT_PAGE = SERVICE_DEFAULTS.maxPageSize;

/** The command, its positional arguments and its options, as given. */
export function parseCommand(argv: readonly string[]) {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      file: { type: 'string', short: 'f' },
      prune: { type: 'boolean' },
      endpoint: { type: 'string' },
      region: { type: 'string' },
      profile: { type: 'string' },
      port: { type: 'string' },
      limit: { type: 'string' },
      by: { type: 'string' },
      resource: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      period: { type: 'string' },
      date: { type: 'string' },
      metric: { type: 'string' },
      entity: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...args] = positionals;
  return { command, args, values };
}

/**
 * The credentials of `--profile` (the AWS SDK's chain for that profile: its keys, SSO or role),
 * else undefined: the SDK's own default (the environment, AWS_PROFILE, …; none to a local server).
 */
export function profileCredentials(
  values: ReturnType<typeof parseCommand>['values'],
): Credentials | undefined {
  return values.profile ? defaultProvider({ profile: values.profile }) : undefined;
}

/** One run of a command: what was asked, and where to send requests and output. */
export interface Invocation {
  readonly command: string;
  readonly args: readonly string[];
  readonly values: ReturnType<typeof parseCommand>['values'];
  readonly endpoint: string;
  readonly admin: SluiceAdmin;
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

/** A command's handler; resolves to the exit code. */
type Command = (call: Invocation) => Promise<number>;

function describe(change: Change): string {
  const sign = { create: '+', update: '~', delete: '-', unchanged: '=', unmanaged: '?' }[
    change.action
  ];
  const head = `  ${sign} ${change.kind} ${change.name}`;
  if (change.action === 'unmanaged') return `${head}   (stored, not in the file; --prune deletes)`;
  if (change.action !== 'update') return head;
  const lines = change.fields.map((field) => {
    const show = (v: unknown) => {
      const text = v === undefined ? '(none)' : JSON.stringify(v);
      return text.length > 160 ? `${text.slice(0, 157)}...` : text;
    };
    return `      ${field}: ${show(own(change.before, field))} → ${show(own(change.after, field))}`;
  });
  return [head, ...lines].join('\n');
}

function summary(changes: readonly Change[]): string {
  const count = (action: Change['action']) => changes.filter((c) => c.action === action).length;
  const kept = count('unmanaged');
  return `Plan: ${count('create')} to create, ${count('update')} to change, ${count('delete')} to delete, ${count('unchanged')} unchanged${kept ? `, ${kept} stored but not in the file` : ''}.`;
}

/** `plan`, and the first half of `apply`: the changes the file makes, printed. */
async function plan({ command, values, admin, endpoint, out }: Invocation): Promise<Change[]> {
  if (!values.file) throw new UsageError(`${command} needs -f FILE`);
  const desired = loadFile(values.file);
  let changes = await planChanges(admin, desired);
  if (values.prune) changes = pruned(changes);
  out(`Sluice at ${endpoint}, file ${values.file}:`);
  for (const change of changes) if (change.action !== 'unchanged') out(describe(change));
  out(summary(changes));
  return changes;
}

/** `apply`: the plan, then its changes made. */
async function apply(call: Invocation): Promise<number> {
  const changes = await plan(call);
  let applied = 0;
  await applyChanges(call.admin, changes, () => {
    applied++;
  });
  call.out(`Applied ${applied} change${applied === 1 ? '' : 's'}.`);
  return 0;
}

/** `get`: the settings, one document, or all of a kind. */
async function get({ args, admin, out, err }: Invocation): Promise<number> {
  const [kind, name] = args;
  // Documents are printed as the admin API answers them (`updated_at`, `updated_by`).
  if (kind === 'settings') {
    out(JSON.stringify(storedConfigToWire(await admin.settings()), null, 2));
    return 0;
  }
  if (!kind || !KINDS.includes(kind))
    throw new UsageError('get plan|entity|resource|settings [NAME]');
  if (name === undefined) {
    const all = await admin.list(kind as ConfigKind);
    out(JSON.stringify(all.map(storedConfigToWire), null, 2));
    return 0;
  }
  const found = await admin.get(kind as ConfigKind, name);
  if (!found) {
    err(`no ${kind} named ${name}`);
    return 1;
  }
  out(JSON.stringify(storedConfigToWire(found), null, 2));
  return 0;
}

/** `audit`: admin changes, newest first. */
async function audit({ values, admin, out }: Invocation): Promise<number> {
  const limit = values.limit === undefined ? 20 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_PAGE)
    throw new UsageError(`--limit must be an integer from 1 to ${MAX_AUDIT_PAGE}`);
  const page = await admin.audit({ limit, ...entityOf(values) });
  for (const entry of page.items) {
    out(
      `${entry.at}  ${entry.who}  ${entry.action} ${entry.kind} ${entry.name}\n    before: ${JSON.stringify(entry.before)}\n    after:  ${JSON.stringify(entry.after)}`,
    );
  }
  if (page.items.length === 0) out('(no audit entries)');
  if (page.next && values.entity) out('(older entries of it may follow: the page read its bound)');
  return 0;
}

/** `usage`: an entity's usage history, through the client routes. */
async function usage({ args, values, endpoint, out }: Invocation): Promise<number> {
  const [entity] = args;
  if (!entity) throw new UsageError('usage needs an ENTITY');
  const granularity = values.by ?? 'day';
  if (!['hour', 'day', 'month'].includes(granularity))
    throw new UsageError('--by must be hour, day or month');
  const credentials = profileCredentials(values);
  const client = new SluiceClient({
    endpoint,
    onUnavailable: 'deny',
    ...(values.region ? { region: values.region } : {}),
    ...(credentials ? { credentials } : {}),
  });
  const history = await client.usage({
    entity,
    granularity: granularity as 'hour' | 'day' | 'month',
    ...(values.resource ? { resource: values.resource } : {}),
    ...(values.from ? { from: values.from } : {}),
    ...(values.to ? { to: values.to } : {}),
  });
  for (const line of usageTable(history)) out(line);
  return 0;
}

/** `top`: the entities that used (or were refused) most. */
async function top({ values, admin, out }: Invocation): Promise<number> {
  if (values.by !== undefined && values.by !== 'denied' && values.by !== 'usage')
    throw new UsageError('--by must be denied (or usage)');
  if (values.period !== undefined && values.period !== 'day' && values.period !== 'month')
    throw new UsageError('--period must be day or month');
  const entities = await admin.top({
    ...(values.period ? { period: values.period as 'day' | 'month' } : {}),
    ...(values.date ? { date: values.date } : {}),
    ...(values.metric ? { metric: values.metric } : {}),
    ...(values.by ? { by: values.by as 'usage' | 'denied' } : {}),
    ...(values.limit ? { limit: Number(values.limit) } : {}),
  });
  for (const line of topTable(entities)) out(line);
  return 0;
}

/** `alerts`: budget alerts, newest first. */
async function alerts({ values, admin, out }: Invocation): Promise<number> {
  const page = await admin.alerts({
    ...(values.limit ? { limit: Number(values.limit) } : {}),
    ...entityOf(values),
  });
  for (const a of page.items) {
    const who = a.entity ?? `resource ${a.resource}`;
    out(
      `${a.at}  ${who}  ${a.limit} reached ${Math.round(a.threshold * 100)}% (${a.used} of ${a.limitValue}) in the window from ${a.window}${a.delivered ? '' : '  [not delivered]'}`,
    );
  }
  if (page.items.length === 0) out('(no budget alerts)');
  if (page.next && values.entity) out('(older entries of it may follow: the page read its bound)');
  return 0;
}

/** `--entity`, for the listings that take it; an empty one is refused. */
function entityOf(values: ReturnType<typeof parseCommand>['values']): { entity?: string } {
  if (values.entity === undefined) return {};
  if (values.entity === '') throw new UsageError('--entity needs a name');
  return { entity: values.entity };
}

/** `rotate-key`: a new lease signing key. */
async function rotateKey({ admin, out }: Invocation): Promise<number> {
  const rotation = await admin.rotateSigningKey();
  out(
    `Signing key rotated: ${rotation.current} signs from now on${rotation.previous ? `; ${rotation.previous} verifies the leases it signed until they expire` : ''}.`,
  );
  if (rotation.removed.length) out(`Removed retired keys: ${rotation.removed.join(', ')}.`);
  return 0;
}

/**
 * `console`: the console for a deployed stack on 127.0.0.1, its API calls signed with the
 * caller's credentials (the default chain, or --profile's; always signed, a local endpoint too),
 * until SIGINT or SIGTERM.
 */
async function serveConsole({ values, out, err }: Invocation): Promise<number> {
  const endpoint = values.endpoint ?? process.env.SLUICE_URL;
  if (!endpoint)
    throw new UsageError('console needs --endpoint URL (the deployed API) or $SLUICE_URL');
  const port = values.port === undefined ? CONSOLE_PORT : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new UsageError('--port must be a port number');
  const credentials = profileCredentials(values) ?? defaultProvider();
  try {
    // Found now, so that a missing profile or expired session is said here, not in the page.
    if (typeof credentials === 'function') await credentials();
  } catch (error) {
    throw new CliError(
      'credentials',
      `no AWS credentials${values.profile ? ` for profile ${values.profile}` : ''}: ${(error as Error).message}`,
    );
  }
  const proxy = await startConsoleProxy({
    endpoint,
    region: values.region,
    credentials,
    port,
    log: (line) => err(`sluice console: ${line}`),
  }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EADDRINUSE') throw error;
    throw new UsageError(`port ${port} is in use: --port N picks another (0: any free one)`);
  });
  out(`The console for ${new URL(endpoint).origin}: ${proxy.url}/console`);
  out('Its API calls are signed with your AWS credentials. Ctrl-C stops it.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await proxy.close();
  return 0;
}

/** Every command, by the name it is called with. */
export const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  [
    'plan',
    async (call) => {
      await plan(call);
      return 0;
    },
  ],
  ['apply', apply],
  ['get', get],
  ['audit', audit],
  ['usage', usage],
  ['top', top],
  ['alerts', alerts],
  ['rotate-key', rotateKey],
  ['console', serveConsole],
]);
