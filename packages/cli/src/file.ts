/**
 * The declarative file (`sluice.yaml`): settings, plans, resources and entities by name. Each
 * document is validated with the same schemas as the admin API, and so is each entity with its
 * plan when the file holds both (the check the admin API makes when the entity is stored); an
 * error names its place in the file (`plans.free.limits[0].burst`).
 */

import { readFileSync } from 'node:fs';
import { COLLECTIONS } from '@sluice/client';
import { type EntityConfig, type PlanConfig, parseConfig, ValidationError } from '@sluice/core';
import { CONFIG_KINDS, type ConfigKind, checkAlertedItems, own } from '@sluice/core/internal';
import { parse as parseYaml } from 'yaml';
import { FileError } from './errors.js';

/** What the file asks for. */
export interface Desired {
  readonly settings?: Record<string, unknown>;
  /** kind → name → document, in file order. */
  readonly items: ReadonlyMap<Exclude<ConfigKind, 'settings'>, ReadonlyMap<string, object>>;
}

/** The file's sections of named documents, in the order they are read: section → kind. */
const SECTIONS = Object.fromEntries(
  (['plan', 'resource', 'entity'] as const).map((kind) => [COLLECTIONS[kind], kind]),
) as Readonly<Record<string, Exclude<ConfigKind, 'settings'>>>;

/** Reads and validates a file. */
export function loadFile(path: string): Desired {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new FileError('', `cannot read ${path}: ${(error as NodeJS.ErrnoException).code}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new FileError('', `${path} is not valid YAML: ${(error as Error).message}`);
  }
  return parseDesired(raw ?? {});
}

/** Validates a parsed file. */
export function parseDesired(raw: unknown): Desired {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new FileError('', 'the file must be a mapping with settings, plans, resources, entities');
  }
  const file = raw as Record<string, unknown>;
  for (const key of Object.keys(file)) {
    if (key !== 'settings' && !Object.hasOwn(SECTIONS, key)) {
      throw new FileError(key, 'unknown section (use settings, plans, resources, entities)');
    }
  }
  const items = new Map<Exclude<ConfigKind, 'settings'>, Map<string, object>>();
  try {
    for (const [section, kind] of Object.entries(SECTIONS)) {
      const docs = new Map<string, object>();
      const value = own(file, section) ?? {};
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new FileError(section, 'must be a mapping of name → document');
      }
      for (const [name, doc] of Object.entries(value)) {
        if (!CONFIG_KINDS[kind].name.test(name)) {
          throw new FileError(`${section}.${name}`, `not a valid ${kind} name`);
        }
        if (name.includes('/')) {
          // API Gateway HTTP APIs decode %2F before routing: such a name has no admin URL.
          throw new FileError(`${section}.${name}`, 'stored names cannot contain "/"');
        }
        docs.set(name, parseConfig(kind, doc ?? {}, `${section}.${name}`));
      }
      items.set(kind, docs);
    }
    checkEntitiesOnPlans(items.get('plan'), items.get('entity'));
    const settings =
      file.settings === undefined ? undefined : parseConfig('settings', file.settings, 'settings');
    return { ...(settings ? { settings } : {}), items };
  } catch (error) {
    if (error instanceof ValidationError) {
      throw new FileError(error.field, error.message.slice(error.field.length + 2));
    }
    throw error;
  }
}

/**
 * What the admin API checks when it stores an entity, against its plan as stored then: the
 * entity's own limits with its plan's (the one it names, else `default`) put no quota with
 * `alerts` on an item another enforced limit may shard. Checked for every entity whose plan is
 * in the file, as `apply` stores that plan before the entity; the refusal names the entity's
 * limit (`entities.acme.limits[0].shards`, or its quota's `alerts`) as the API's refusal does.
 */
function checkEntitiesOnPlans(
  plans: ReadonlyMap<string, object> | undefined,
  entities: ReadonlyMap<string, object> | undefined,
): void {
  for (const [name, doc] of entities ?? []) {
    const entity = doc as EntityConfig;
    const planName = entity.plan ?? 'default';
    const plan = plans?.get(planName) as PlanConfig | undefined;
    if (!plan?.limits || !entity.limits) continue;
    checkAlertedItems([
      { limits: plan.limits, source: `plan ${planName}` },
      { limits: entity.limits, field: `${COLLECTIONS.entity}.${name}.limits` },
    ]);
  }
}
