/**
 * `@sluice/client/wire`: the SDK's one mapping between HTTP API v1's bodies (snake_case, as the
 * server's schemas define them) and the shapes it hands its callers (camelCase), both ways. The
 * client, the admin, the middy middleware and the CLI all map through here.
 *
 * The wire types are the server's own: the types of the zod schemas its handlers validate with
 * (lambdas/src/schemas.ts) and of the answers docs/openapi.json describes (responses.ts),
 * imported as types only. They cost the bundle nothing, and a field renamed or retyped there no
 * longer compiles here. Its declarations need `@sluice/lambdas` (a development dependency): the
 * SDK's own entry points never refer to them.
 */

import type * as wire from '@sluice/lambdas/responses';
import type {
  AcquireRequestBody,
  AdjustRequestBody,
  AvailableRequestBody,
  ReleaseRequestBody,
} from '@sluice/lambdas/schemas';
import type { AuditEntry, BudgetAlert, StoredConfig, TopEntities } from './admin.js';
import type { SluiceProblemCode } from './errors.js';
import type {
  AcquireRequest,
  AcquireResult,
  AvailableResult,
  KnownAcquireRefusalCode,
  LimitInput,
  LimitStatus,
  Listing,
  SettleResult,
  Usage,
  UsageHistory,
  Violation,
} from './types.js';

/** Whether two types are the same. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Compiles only when `T` is `true`. */
type Check<T extends true> = T;

/**
 * The SDK's codes are the server's, exactly (docs/openapi.json enumerates them): a code added
 * there, or one renamed, does not compile until the SDK names it too.
 */
export type CodesMatch = Check<Same<SluiceProblemCode, wire.ProblemCode>>;
/** An acquire's refusal codes are the server's. */
export type RefusalCodesMatch = Check<
  KnownAcquireRefusalCode extends wire.ProblemCode ? true : false
>;

/**
 * What arrives: the schema's fields, any of which an older Sluice, or a proxy answering for it,
 * may leave out. Answers are read as the schema for their route and status says (docs/openapi.json;
 * the e2e tier checks every answer against it); what is missing reads as empty.
 */
type Received<T> = { readonly [K in keyof T]?: T[K] | undefined };

const received = <T>(body: unknown): Received<T> =>
  (typeof body === 'object' && body !== null ? body : {}) as Received<T>;

// ----------------------------------------------------------------------------------- requests

/** Acquire's body. */
export function acquireBody(request: AcquireRequest): AcquireRequestBody {
  return {
    entity: request.entity,
    resource: request.resource,
    usage: request.usage,
    ...(request.limits ? { limits: limitsBody(request.limits) } : {}),
    ...(request.maxWaitMs !== undefined ? { max_wait_ms: request.maxWaitMs } : {}),
    ...(request.priority !== undefined ? { priority: request.priority } : {}),
    ...(request.batch ? { batch: true } : {}),
    ...(request.fallback ? { fallback: [...request.fallback] } : {}),
  };
}

/** Adjust's body (totals so far). */
export const adjustBody = (leaseId: string, usage: Usage): AdjustRequestBody => ({
  lease_id: leaseId,
  usage,
});

/** Release's body: final totals, or none to give the reservation back. */
export const releaseBody = (leaseId: string, usage: Usage | undefined): ReleaseRequestBody => ({
  lease_id: leaseId,
  ...(usage ? { usage } : {}),
});

/** Available's body. */
export const availableBody = (request: {
  readonly entity: string;
  readonly resource: string;
  readonly usage?: Usage;
  readonly limits?: readonly LimitInput[];
}): AvailableRequestBody => ({
  entity: request.entity,
  resource: request.resource,
  ...(request.usage ? { usage: request.usage } : {}),
  ...(request.limits ? { limits: limitsBody(request.limits) } : {}),
});

/** Inline limits: their fields are named as on the wire already. */
const limitsBody = (limits: readonly LimitInput[]): NonNullable<AcquireRequestBody['limits']> =>
  limits.map((limit) => ({ ...limit }));

// ------------------------------------------------------------------------------------ answers

/** Limit statuses. */
export const limitsFrom = (limits: readonly wire.LimitStatusBody[] | undefined): LimitStatus[] =>
  (limits ?? []).map((l) => ({
    scope: l.scope,
    name: l.name,
    metric: l.metric,
    limit: l.limit,
    remaining: l.remaining,
    resetMs: l.reset_ms,
  }));

/** Violations (a refusal's carry their `resource` when fallbacks were in play). */
export const violationsFrom = (
  violations: readonly wire.RefusedViolationBody[] | undefined,
): Violation[] =>
  (violations ?? []).map((v) => ({
    scope: v.scope,
    name: v.name,
    metric: v.metric,
    limit: v.limit,
    remaining: v.remaining,
    requested: v.requested,
    retryAfterMs: v.retry_after_ms,
    ...(v.resource !== undefined ? { resource: v.resource } : {}),
  }));

/** Violations as Sluice words them (the middy middleware's refusals pass them on so). */
export const violationsToWire = (violations: readonly Violation[]): wire.RefusedViolationBody[] =>
  violations.map((v) => ({
    scope: v.scope,
    name: v.name,
    metric: v.metric,
    limit: v.limit,
    remaining: v.remaining,
    requested: v.requested,
    retry_after_ms: v.retryAfterMs,
    ...(v.resource !== undefined ? { resource: v.resource } : {}),
  }));

const shadowFrom = (shadow: readonly wire.ViolationBody[] | undefined) =>
  shadow ? { shadowViolations: violationsFrom(shadow) } : {};

type Admission = Extract<AcquireResult, { allowed: true }>;
type Refusal = Extract<AcquireResult, { allowed: false }>;

/** Acquire's 200. */
export function admissionFrom(
  body: unknown,
  request: AcquireRequest,
  headers: Readonly<Record<string, string>>,
): Admission {
  const a = received<wire.AcquireAllowedBody>(body);
  return {
    allowed: true,
    leaseId: a.lease_id ?? '',
    waitMs: a.wait_ms ?? 0,
    resource: a.resource ?? request.resource,
    fellBack: a.fell_back ?? false,
    limits: limitsFrom(a.limits),
    degraded: false,
    headers,
    ...shadowFrom(a.shadow_violations),
  };
}

/**
 * Acquire's refusals (429, 422), with the `code` Sluice sent. An answer without one (API
 * Gateway's own throttling answers a bare 429) reads as its status says.
 */
export function refusalFrom(
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>>,
): Refusal {
  const p = received<wire.ProblemBody>(body);
  return {
    allowed: false,
    code: p.code ?? (status === 429 ? 'rate_limited' : 'exceeds_capacity'),
    retryAfterMs: p.retry_after_ms ?? null,
    violations: violationsFrom(p.violations),
    limits: [],
    degraded: false,
    headers,
    ...shadowFrom(p.shadow_violations),
  };
}

/** The refusal when Sluice could not be reached, or answered only 5xx: its code, if it sent one. */
export function unreachedFrom(last: unknown): Refusal {
  const p = received<wire.ProblemBody>(last);
  return {
    allowed: false,
    code: p.code === 'internal' ? 'internal' : 'unavailable',
    retryAfterMs: p.retry_after_ms ?? null,
    violations: [],
    limits: [],
    degraded: true,
  };
}

/** Adjust's and release's 200. */
export function settledFrom(leaseId: string, body: unknown): SettleResult {
  const s = received<wire.SettleBody>(body);
  return {
    leaseId,
    settled: s.settled ?? false,
    usage: s.usage ?? {},
    limits: limitsFrom(s.limits),
    degraded: false,
  };
}

/** Available's 200. */
export function availableFrom(body: unknown): AvailableResult {
  const a = received<wire.AvailableBody>(body);
  return { limits: limitsFrom(a.limits), retryAfterMs: a.retry_after_ms ?? null, degraded: false };
}

/** Usage history's 200. */
export function usageHistoryFrom(body: unknown): UsageHistory {
  const u = received<wire.UsageBody>(body);
  return {
    entity: u.entity ?? '',
    granularity: u.granularity ?? 'day',
    items: (u.items ?? []).map((i) => ({
      periodStart: i.period_start,
      resource: i.resource,
      usage: i.usage,
      leases: i.leases,
      denied: i.denied,
    })),
  };
}

/** What a problem+json answer (or another refusal: API Gateway's `{message}`) says. */
export function problemFrom(body: unknown): {
  readonly code?: string | undefined;
  readonly detail?: string | undefined;
  readonly field?: string | undefined;
} {
  const p = received<wire.ProblemBody & { message: string }>(body);
  return { code: p.code, detail: p.detail ?? p.message, field: p.field };
}

// ------------------------------------------------------------------------------ admin answers

/** A stored document. */
export function storedConfigFrom(body: unknown): StoredConfig {
  const s = received<wire.StoredConfigBody>(body);
  return {
    kind: s.kind ?? 'settings',
    name: s.name ?? '',
    config: s.config ?? {},
    ...(s.updated_at !== undefined ? { updatedAt: s.updated_at } : {}),
    ...(s.updated_by !== undefined ? { updatedBy: s.updated_by } : {}),
    version: s.version ?? 0,
    ...(s.changed !== undefined ? { changed: s.changed } : {}),
  };
}

/** A stored document as the admin API words it (the CLI prints that). */
export const storedConfigToWire = (stored: StoredConfig): wire.StoredConfigBody => ({
  kind: stored.kind,
  name: stored.name,
  config: stored.config,
  ...(stored.updatedAt !== undefined ? { updated_at: stored.updatedAt } : {}),
  ...(stored.updatedBy !== undefined ? { updated_by: stored.updatedBy } : {}),
  version: stored.version,
  ...(stored.changed !== undefined ? { changed: stored.changed } : {}),
});

/** A page of stored documents. */
export function storedConfigPageFrom(body: unknown): Listing<StoredConfig> {
  const p = received<wire.StoredConfigPageBody>(body);
  return { items: (p.items ?? []).map(storedConfigFrom), next: p.next ?? null };
}

/** A page of the audit trail (its fields are one word each: the same on both sides). */
export function auditPageFrom(body: unknown): Listing<AuditEntry> {
  const p = received<wire.AuditPageBody>(body);
  return {
    items: (p.items ?? []).map((e) => ({
      id: e.id,
      at: e.at,
      who: e.who,
      action: e.action,
      kind: e.kind,
      name: e.name,
      before: e.before,
      after: e.after,
    })),
    next: p.next ?? null,
  };
}

/** A page of budget alerts. */
export function alertsPageFrom(body: unknown): Listing<BudgetAlert> {
  const p = received<wire.AlertsPageBody>(body);
  return {
    items: (p.items ?? []).map((a) => ({
      entity: a.entity,
      resource: a.resource,
      limit: a.limit,
      window: a.window,
      threshold: a.threshold,
      used: a.used,
      limitValue: a.limit_value,
      at: a.at,
      delivered: a.delivered,
    })),
    next: p.next ?? null,
  };
}

/** The top entities of a day or month. */
export function topFrom(body: unknown): TopEntities {
  const t = received<wire.TopBody>(body);
  return {
    period: t.period ?? 'day',
    date: t.date ?? '',
    metric: t.metric ?? '',
    by: t.by ?? 'usage',
    items: (t.items ?? []).map((e) => ({
      entity: e.entity,
      usage: e.usage,
      leases: e.leases,
      denied: e.denied,
    })),
    exact: t.exact ?? true,
    errorBound: t.error_bound ?? 0,
  };
}

/** An entity reset. */
export function resetFrom(body: unknown): { entity: string; cleared: number } {
  const r = received<wire.ResetBody>(body);
  return { entity: r.entity ?? '', cleared: r.cleared ?? 0 };
}

/** A signing key rotation. */
export function rotationFrom(body: unknown): {
  current: string;
  previous: string | null;
  removed: string[];
} {
  const r = received<wire.RotationBody>(body);
  return { current: r.current ?? '', previous: r.previous ?? null, removed: r.removed ?? [] };
}
