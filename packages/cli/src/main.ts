/**
 * `sluice`: plan and apply a declarative file against the admin API, read stored
 * configuration, the audit trail, usage history, top entities and budget alerts. Requests are SigV4-signed with the caller's AWS
 * credentials (the SDK's signer), except to a local server.
 */
import { parseArgs } from 'node:util';
import {
  COLLECTIONS,
  type ConfigKind,
  SluiceAdmin,
  SluiceClient,
  SluiceClientError,
} from '@sluice/client';
import { own, SERVICE_DEFAULTS } from '@sluice/core';
import { applyChanges, type Change, planChanges, pruned } from './diff.js';
import { CliError, UsageError } from './errors.js';
import { loadFile } from './file.js';
import { topTable, usageTable } from './tables.js';

const USAGE = `sluice — Sluice's admin CLI

  sluice plan  -f sluice.yaml [--prune]   what apply would change
  sluice apply -f sluice.yaml [--prune]   apply the file (--prune also deletes what it omits)
  sluice get plan|entity|resource [NAME]  one document, or all of a kind
  sluice get settings
  sluice audit [--limit N]                admin changes, newest first
  sluice usage ENTITY [--by hour|day|month] [--resource R] [--from ISO] [--to ISO]
                                          its usage history (costs in USD)
  sluice top [--period day|month] [--date YYYY-MM-DD] [--metric M] [--by denied] [--limit N]
                                          the entities that used (or were refused) most
  sluice alerts [--limit N]               budget alerts, newest first
  sluice rotate-key                       a new lease signing key (the old one still
                                          verifies the leases it signed until they expire)

Options:
  --endpoint URL   the Sluice API (default: $SLUICE_URL, else http://127.0.0.1:3000)
  --region REGION  for SigV4 (default: from the endpoint, else $AWS_REGION)
  -h, --help`;

const KINDS: readonly string[] = Object.keys(COLLECTIONS);
const MAX_AUDIT_PAGE = SERVICE_DEFAULTS.maxPageSize;

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

/** Runs the CLI; resolves to the exit code. */
export async function main(
  argv: readonly string[],
  out: (line: string) => void = (line) => console.log(line),
  err: (line: string) => void = (line) => console.error(line),
): Promise<number> {
  let parsed: ReturnType<typeof parseCommand>;
  try {
    parsed = parseCommand(argv);
  } catch (error) {
    err(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { command, args, values } = parsed;
  if (values.help || !command) {
    out(USAGE);
    return command || values.help ? 0 : 2;
  }
  const endpoint = values.endpoint ?? process.env.SLUICE_URL ?? 'http://127.0.0.1:3000';
  try {
    const admin = new SluiceAdmin({
      endpoint,
      ...(values.region ? { region: values.region } : {}),
    });
    switch (command) {
      case 'plan':
      case 'apply': {
        if (!values.file) throw new UsageError(`${command} needs -f FILE`);
        const desired = loadFile(values.file);
        let changes = await planChanges(admin, desired);
        if (values.prune) changes = pruned(changes);
        out(`Sluice at ${endpoint}, file ${values.file}:`);
        for (const change of changes) if (change.action !== 'unchanged') out(describe(change));
        out(summary(changes));
        if (command === 'apply') {
          let applied = 0;
          await applyChanges(admin, changes, () => {
            applied++;
          });
          out(`Applied ${applied} change${applied === 1 ? '' : 's'}.`);
        }
        return 0;
      }
      case 'get': {
        const [kind, name] = args;
        if (kind === 'settings') {
          out(JSON.stringify(await admin.settings(), null, 2));
          return 0;
        }
        if (!kind || !KINDS.includes(kind))
          throw new UsageError('get plan|entity|resource|settings [NAME]');
        if (name === undefined) {
          out(JSON.stringify(await admin.list(kind as ConfigKind), null, 2));
          return 0;
        }
        const found = await admin.get(kind as ConfigKind, name);
        if (!found) {
          err(`no ${kind} named ${name}`);
          return 1;
        }
        out(JSON.stringify(found, null, 2));
        return 0;
      }
      case 'audit': {
        const limit = values.limit === undefined ? 20 : Number(values.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_AUDIT_PAGE)
          throw new UsageError(`--limit must be an integer from 1 to ${MAX_AUDIT_PAGE}`);
        const page = await admin.audit({ limit });
        for (const entry of page.items) {
          out(
            `${entry.at}  ${entry.who}  ${entry.action} ${entry.kind} ${entry.name}\n    before: ${JSON.stringify(entry.before)}\n    after:  ${JSON.stringify(entry.after)}`,
          );
        }
        if (page.items.length === 0) out('(no audit entries)');
        return 0;
      }
      case 'usage': {
        const [entity] = args;
        if (!entity) throw new UsageError('usage needs an ENTITY');
        const granularity = values.by ?? 'day';
        if (!['hour', 'day', 'month'].includes(granularity))
          throw new UsageError('--by must be hour, day or month');
        const client = new SluiceClient({
          endpoint,
          onUnavailable: 'deny',
          ...(values.region ? { region: values.region } : {}),
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
      case 'top': {
        if (values.by !== undefined && values.by !== 'denied' && values.by !== 'usage')
          throw new UsageError('--by must be denied (or usage)');
        if (values.period !== undefined && values.period !== 'day' && values.period !== 'month')
          throw new UsageError('--period must be day or month');
        const top = await admin.top({
          ...(values.period ? { period: values.period as 'day' | 'month' } : {}),
          ...(values.date ? { date: values.date } : {}),
          ...(values.metric ? { metric: values.metric } : {}),
          ...(values.by ? { by: values.by as 'usage' | 'denied' } : {}),
          ...(values.limit ? { limit: Number(values.limit) } : {}),
        });
        for (const line of topTable(top)) out(line);
        return 0;
      }
      case 'alerts': {
        const page = await admin.alerts(values.limit ? { limit: Number(values.limit) } : {});
        for (const a of page.items) {
          const who = a.entity ?? `resource ${a.resource}`;
          out(
            `${a.at}  ${who}  ${a.limit} reached ${Math.round(a.threshold * 100)}% (${a.used} of ${a.limit_value}) in the window from ${a.window}${a.delivered ? '' : '  [not delivered]'}`,
          );
        }
        if (page.items.length === 0) out('(no budget alerts)');
        return 0;
      }
      case 'rotate-key': {
        const rotation = await admin.rotateSigningKey();
        out(
          `Signing key rotated: ${rotation.current} signs from now on${rotation.previous ? `; ${rotation.previous} verifies the leases it signed until they expire` : ''}.`,
        );
        if (rotation.removed.length) out(`Removed retired keys: ${rotation.removed.join(', ')}.`);
        return 0;
      }
      default:
        err(`unknown command ${command}\n\n${USAGE}`);
        return 2;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      err(`error: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof CliError) {
      err(`error: ${error.message}`);
      return 1;
    }
    if (error instanceof SluiceClientError) {
      const field = 'field' in error && error.field ? ` (field ${String(error.field)})` : '';
      const who = error.status ? `Sluice answered ${error.status} ` : '';
      err(`error: ${who}${error.code}: ${error.message}${field}`);
      return 1;
    }
    throw error;
  }
}

function parseCommand(argv: readonly string[]) {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      file: { type: 'string', short: 'f' },
      prune: { type: 'boolean' },
      endpoint: { type: 'string' },
      region: { type: 'string' },
      limit: { type: 'string' },
      by: { type: 'string' },
      resource: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      period: { type: 'string' },
      date: { type: 'string' },
      metric: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...args] = positionals;
  return { command, args, values };
}
