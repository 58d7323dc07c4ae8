/**
 * The schemas of stored configuration — plans, entities, resources, settings — and their full
 * validation. The one source of truth: the admin API validates with them, and so does the CLI's
 * declarative file. (Apart from policy.ts so the acquire bundle leaves them out.)
 */

import * as z from 'zod/mini';
import { joinKey } from '../canonical.js';
import { MAX_FALLBACKS, PRIORITY } from '../defaults.js';
import {
  alertsSchema,
  bucketLimitSchema,
  checkSharding,
  IDENTIFIER_PATTERN,
  identifierSchema,
  type LimitInput,
  MAX_LIMITS_PER_SCOPE,
  quotaLimitSchema,
  timeZoneSchema,
  validationErrorFrom,
} from '../engine/limits.js';
import { ValidationError } from '../errors.js';
import { own } from '../names.js';
import { checkAlertedItems } from './alerted-items.js';
import { CALLER_PATTERN, MAX_CALLERS } from './callers.js';
import { MAX_PRICE_DECIMALS, parseDecimal } from './price.js';
import { matchesResource } from './scope-checks.js';

const priceValue = z.union([z.number(), z.string()]).check(
  z.refine((v) => parseDecimal(v) !== undefined, {
    message: `must be a non-negative decimal below 1e9 with at most ${MAX_PRICE_DECIMALS} decimal places`,
  }),
);

/** A share below 1, as a decimal ("0.5"). */
const discountValue = z.union([z.number(), z.string()]).check(
  z.refine(
    (v) => {
      const d = parseDecimal(v);
      return d !== undefined && d.units < 10n ** BigInt(d.scale);
    },
    { message: `must be a decimal from 0 up to (not including) 1, e.g. "0.5"` },
  ),
);

/**
 * USD per million tokens: input, output, cached input (cache reads) and cache writes (each of
 * those two the input price unless set), and the batch discount, a share taken off every part
 * for calls acquired with `batch: true`.
 */
export const priceSchema = z.strictObject({
  input: priceValue,
  output: priceValue,
  cached_input: z.optional(priceValue),
  cache_write: z.optional(priceValue),
  batch_discount: z.optional(discountValue),
});

/** Step names: like limit names. */
export const PLAN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A resource pattern: an exact resource, or a prefix ending in `*` (`gpt-4o*`, `*`). */
export const RESOURCE_PATTERN = /^(?:[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,126})?\*$/;

const resourcePattern = z.string().check(
  z.refine((s) => IDENTIFIER_PATTERN.test(s) || RESOURCE_PATTERN.test(s), {
    message: 'must be a resource name, or a prefix ending in * (e.g. gpt-4o*)',
  }),
);

/** A limit of a plan or an entity: an inline limit, optionally only for the resources `resource` matches. */
export const planLimitSchema = z.union([
  z.extend(bucketLimitSchema, { resource: z.optional(resourcePattern) }),
  z.extend(quotaLimitSchema, { resource: z.optional(resourcePattern) }),
]);

const planLimits = z.array(planLimitSchema).check(z.maxLength(64));
const description = z.optional(z.string().check(z.maxLength(1_024)));

/** A plan, as the admin API stores it (operation `putPlan`). */
export const planSchema = z
  .strictObject({
    limits: z.optional(planLimits),
    /** Resources (or patterns) this plan may call; absent: every resource. */
    allowed_resources: z.optional(z.array(resourcePattern).check(z.maxLength(256))),
    /** Largest `input_tokens` estimate one call may send. */
    max_input_tokens: z.optional(z.number().check(z.int(), z.minimum(1), z.maximum(100_000_000))),
    /**
     * The share (1–100, %) of limits shared with other callers — ancestors', the resource's — that
     * this plan's calls may fill; its own limits hold nothing back. A request may only lower it.
     */
    priority: z.optional(
      z.number().check(z.int(), z.minimum(PRIORITY.min), z.maximum(PRIORITY.max)),
    ),
    /**
     * Smaller models to fall back to, per resource: when the resource refuses (rate limited, or
     * not allowed), the first of its fallbacks that admits is taken in the same acquire.
     */
    fallbacks: z.optional(
      z.record(
        identifierSchema,
        z.array(identifierSchema).check(z.minLength(1), z.maxLength(MAX_FALLBACKS)),
      ),
    ),
    description,
  })
  .check(
    z.superRefine((plan, ctx) => {
      for (const [resource, targets] of Object.entries(plan.fallbacks ?? {})) {
        targets.forEach((target, i) => {
          const path = ['fallbacks', resource, i];
          if (target === resource || targets.indexOf(target) !== i)
            ctx.addIssue({ code: 'custom', path, message: `${target} is already tried before it` });
          else if (
            plan.allowed_resources &&
            !plan.allowed_resources.some((pattern) => matchesResource(pattern, target))
          )
            ctx.addIssue({
              code: 'custom',
              path,
              message: `${target} is not among this plan's allowed_resources`,
            });
        });
      }
      const cycle = fallbackCycle(plan.fallbacks ?? {});
      if (cycle)
        ctx.addIssue({
          code: 'custom',
          path: ['fallbacks', cycle[0] as string],
          message: `fallbacks go round in a cycle: ${cycle.join(' → ')}`,
        });
    }),
  );

/** A cycle among fallbacks (`a → b → a`), as the resources on it, or undefined. */
export function fallbackCycle(
  fallbacks: Readonly<Record<string, readonly string[]>>,
): string[] | undefined {
  const done = new Set<string>();
  const visit = (node: string, path: string[]): string[] | undefined => {
    const at = path.indexOf(node);
    if (at >= 0) return [...path.slice(at), node];
    if (done.has(node)) return undefined;
    for (const next of own(fallbacks, node) ?? []) {
      const found = visit(next, [...path, node]);
      if (found) return found;
    }
    done.add(node);
    return undefined;
  };
  for (const start of Object.keys(fallbacks)) {
    const found = visit(start, []);
    if (found) return found;
  }
  return undefined;
}

/**
 * The IAM principals that may act for an entity and its descendants (ARN patterns with `*` and
 * `?`); anyone allowed to call the API when absent.
 */
const callersSchema = z
  .array(
    z.string().check(
      z.maxLength(256),
      z.regex(CALLER_PATTERN, {
        message:
          'must be an IAM principal ARN pattern, e.g. arn:aws:iam::123456789012:role/team-a-* (role, user, root, assumed-role or federated-user; * and ? as wildcards)',
      }),
    ),
  )
  .check(
    z.minLength(1, { message: 'name at least one caller, or leave callers out' }),
    z.maxLength(MAX_CALLERS),
  );

/** An entity (operation `putEntity`). */
export const entitySchema = z.strictObject({
  plan: z.optional(z.string().check(z.regex(PLAN_NAME_PATTERN))),
  parent: z.optional(identifierSchema),
  /** Override the plan's limits of the same name, or add limits. */
  limits: z.optional(planLimits),
  disabled: z.optional(z.boolean()),
  /** Who may act for it and its descendants: every level that names callers must match. */
  callers: z.optional(callersSchema),
  /** The time zone its usage history counts days and months in. @default the settings' */
  timezone: z.optional(timeZoneSchema),
  description,
});

/** A resource (operation `putResource`). */
export const resourceSchema = z.strictObject({
  /** USD per million tokens. */
  price: z.optional(priceSchema),
  /** Shared by every caller of this resource (the provider's own limits for the account). */
  limits: z.optional(z.array(z.union([bucketLimitSchema, quotaLimitSchema]))),
  description,
});

/** The settings (operation `putSettings`). */
export const settingsSchema = z.strictObject({
  /** `refuse`: entities without a stored record get 403 `unknown_entity`. @default "allow" */
  unknown_entities: z.optional(z.enum(['allow', 'refuse'])),
  /** Price of resources that have none, for cost limits. @default none: 422 `price_unknown` */
  default_price: z.optional(priceSchema),
  /** Time zone of usage days and months for entities that name none. @default "UTC" */
  timezone: z.optional(timeZoneSchema),
  /** Budget alert thresholds of calendar quotas that name none, e.g. [0.8, 1]. @default none */
  budget_alerts: z.optional(alertsSchema),
});

export type PlanConfig = z.infer<typeof planSchema>;
export type EntityConfig = z.infer<typeof entitySchema>;
export type ResourceConfig = z.infer<typeof resourceSchema>;
export type SettingsConfig = z.infer<typeof settingsSchema>;
export type PlanLimitInput = z.infer<typeof planLimitSchema>;

/** The kinds of stored configuration, each with its schema and the check beyond the schema. */
export const CONFIG_KINDS = {
  plan: { schema: planSchema, name: PLAN_NAME_PATTERN },
  entity: { schema: entitySchema, name: IDENTIFIER_PATTERN },
  resource: { schema: resourceSchema, name: IDENTIFIER_PATTERN },
  settings: { schema: settingsSchema, name: /^settings$/ },
} as const;

export type ConfigKind = keyof typeof CONFIG_KINDS;
export type ConfigOf<K extends ConfigKind> = z.infer<(typeof CONFIG_KINDS)[K]['schema']>;

/**
 * Validates a configuration document fully, naming the first bad field (under `field`), and
 * returns it as stored. References to other items (plan, parent) are checked by the caller.
 */
export function parseConfig<K extends ConfigKind>(
  kind: K,
  input: unknown,
  field = '',
): ConfigOf<K> {
  const parsed = CONFIG_KINDS[kind].schema.safeParse(input);
  if (!parsed.success) {
    const error = validationErrorFrom(parsed.error, field);
    throw error.field === ''
      ? new ValidationError('body', error.message.replace(/^: /, ''))
      : error;
  }
  const doc = parsed.data as ConfigOf<K>;
  const at = (rest: string) => (field ? `${field}.${rest}` : rest);
  if ('limits' in doc && doc.limits) {
    checkLimitSet(doc.limits, at('limits'));
    // A quota's alerts are judged on one item: none where a limit beside it may shard the item.
    checkAlertedItems([{ limits: doc.limits, field: at('limits') }]);
  }
  return doc;
}

/** No two limits with one name and one pattern; at most 16 names; a quota's zone is valid. */
function checkLimitSet(
  limits: readonly (LimitInput & { resource?: string | undefined })[],
  field: string,
) {
  const seen = new Set<string>();
  const names = new Set<string>();
  limits.forEach((limit, i) => {
    const id = joinKey(limit.name, limit.resource ?? '');
    if (seen.has(id)) {
      throw new ValidationError(
        `${field}[${i}].name`,
        `duplicate limit "${limit.name}"${limit.resource ? ` for ${limit.resource}` : ''}`,
      );
    }
    seen.add(id);
    names.add(limit.name);
    checkSharding(limit, `${field}[${i}]`);
  });
  if (names.size > MAX_LIMITS_PER_SCOPE) {
    throw new ValidationError(field, `at most ${MAX_LIMITS_PER_SCOPE} distinct limit names`);
  }
}
