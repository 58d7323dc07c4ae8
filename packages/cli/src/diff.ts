/**
 * The difference between the file and what Sluice has stored, in the order it must be applied:
 * settings, resources, plans, then entities parents first; deletions (with --prune) last,
 * children first.
 */
import type { ConfigKind, SluiceAdmin, StoredConfig } from '@sluice/client';
import { canonicalJson as canonical, own } from '@sluice/core/internal';
import { CliError, FileError } from './errors.js';
import type { Desired } from './file.js';

type Kind = ConfigKind | 'settings';

/** One step of a plan. */
export interface Change {
  readonly kind: Kind;
  readonly name: string;
  readonly action: 'create' | 'update' | 'delete' | 'unchanged' | 'unmanaged';
  readonly before?: Record<string, unknown>;
  readonly after?: Record<string, unknown>;
  /** Top-level fields that differ (updates). */
  readonly fields: readonly string[];
  /** The stored document as the plan read it: apply writes only over that one. */
  readonly read?: StoredConfig;
}

function compare(
  kind: Kind,
  name: string,
  stored: StoredConfig | undefined,
  wanted: Record<string, unknown>,
): Change {
  if (!stored) return { kind, name, action: 'create', after: wanted, fields: Object.keys(wanted) };
  const before = stored.config;
  const read = { read: stored };
  const keys = [...new Set([...Object.keys(before), ...Object.keys(wanted)])];
  const fields = keys.filter((k) => canonical(own(before, k)) !== canonical(own(wanted, k)));
  return {
    kind,
    name,
    action: fields.length ? 'update' : 'unchanged',
    before,
    after: wanted,
    fields,
    ...read,
  };
}

/** Parents before children (entities whose parent is only stored come first). */
function parentsFirst(entities: ReadonlyMap<string, object>): string[] {
  const order: string[] = [];
  const placed = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string) => {
    if (placed.has(name)) return;
    if (visiting.has(name))
      throw new FileError(`entities.${name}.parent`, 'the parents form a cycle');
    visiting.add(name);
    const parent = (entities.get(name) as { parent?: string } | undefined)?.parent;
    if (parent !== undefined && entities.has(parent)) visit(parent);
    visiting.delete(name);
    placed.add(name);
    order.push(name);
  };
  for (const name of entities.keys()) visit(name);
  return order;
}

/** Compares the file with what is stored. */
export async function planChanges(admin: SluiceAdmin, desired: Desired): Promise<Change[]> {
  const changes: Change[] = [];
  if (desired.settings) {
    const current = await admin.settings();
    const change = compare(
      'settings',
      'settings',
      current.version ? current : undefined,
      desired.settings,
    );
    changes.push({ ...change, read: current }); // unstored too: its tag says so
  }
  const kinds = ['resource', 'plan', 'entity'] as const;
  const stored = await Promise.all(kinds.map((kind) => admin.list(kind)));
  const unmanaged: Change[] = [];
  kinds.forEach((kind, i) => {
    const current = new Map((stored[i] ?? []).map((s) => [s.name, s]));
    const wanted = desired.items.get(kind) ?? new Map<string, object>();
    const names = kind === 'entity' ? parentsFirst(wanted) : [...wanted.keys()];
    for (const name of names) {
      changes.push(
        compare(kind, name, current.get(name), wanted.get(name) as Record<string, unknown>),
      );
    }
    for (const [name, s] of current) {
      if (!wanted.has(name))
        unmanaged.push({ kind, name, action: 'unmanaged', before: s.config, fields: [], read: s });
    }
  });
  // Deletions: entities children first, then plans, then resources.
  const depth = (name: string, seen = 0): number => {
    const parent = unmanaged.find((c) => c.kind === 'entity' && c.name === name)?.before?.parent;
    return typeof parent === 'string' && seen < 16 ? 1 + depth(parent, seen + 1) : 0;
  };
  const rank = { entity: 0, plan: 1, resource: 2, settings: 3 } as const;
  unmanaged.sort((a, b) => rank[a.kind] - rank[b.kind] || depth(b.name) - depth(a.name));
  return [...changes, ...unmanaged];
}

/** Turns unmanaged items into deletions (`--prune`). */
export function pruned(changes: readonly Change[]): Change[] {
  return changes.map((c) => (c.action === 'unmanaged' ? { ...c, action: 'delete' } : c));
}

/**
 * Applies a plan's changes in order; stops at the first refusal. Each write holds only over the
 * document the plan read (If-Match its tag; a creation If-None-Match: *): a change another admin
 * made since is never overwritten, created over or deleted unseen (412 `precondition_failed`).
 */
export async function applyChanges(
  admin: SluiceAdmin,
  changes: readonly Change[],
  onApplied: (change: Change) => void,
): Promise<void> {
  for (const change of changes) {
    const { kind, name, action } = change;
    if (action === 'unchanged' || action === 'unmanaged') continue;
    if (kind === 'settings') {
      const tag = change.read?.etag;
      await admin.putSettings(change.after, tag === undefined ? {} : { ifMatch: tag });
    } else if (action === 'create') {
      await admin.put(kind, name, change.after, { ifNoneMatch: '*' });
    } else if (action === 'update') {
      await admin.put(kind, name, change.after, { ifMatch: await tagAsRead(admin, change) });
    } else {
      await admin.delete(kind, name, { ifMatch: await tagAsRead(admin, change) });
    }
    onApplied(change);
  }
}

/**
 * The entity tag of the document the plan read (a listing carries none): read again, it must be
 * the same document, else it changed since and is not written over.
 */
async function tagAsRead(admin: SluiceAdmin, change: Change): Promise<string> {
  const { kind, name, read } = change;
  const now = kind === 'settings' ? undefined : await admin.get(kind, name);
  const same =
    now?.etag !== undefined &&
    read !== undefined &&
    now.version === read.version &&
    now.updatedAt === read.updatedAt &&
    canonical(now.config) === canonical(read.config);
  if (!same || now?.etag === undefined)
    throw new CliError(
      'conflict',
      `${kind} ${name} changed since it was read${now?.updatedBy ? ` (by ${now.updatedBy})` : ''}: not written; plan again`,
    );
  return now.etag;
}
