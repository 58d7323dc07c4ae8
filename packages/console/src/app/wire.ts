/** The answers the console reads, as docs/openapi.json describes them (fields it uses only). */

export type Metrics = Readonly<Record<string, number>>;

export interface UsagePeriod {
  readonly period_start: string;
  readonly resource: string;
  readonly usage: Metrics;
  readonly leases: number;
  readonly denied: Metrics;
}

export interface UsageAnswer {
  readonly entity: string;
  readonly granularity: 'hour' | 'day' | 'month';
  readonly items: readonly UsagePeriod[];
}

export interface Limit {
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly per?: string | number;
  readonly burst?: number;
  readonly window?: string;
  readonly timezone?: string;
  readonly resource?: string;
  readonly mode?: string;
  readonly alerts?: readonly number[];
  readonly shards?: number;
  readonly max_shards?: number;
}

export interface Stored<C = Record<string, unknown>> {
  readonly kind: string;
  readonly name: string;
  readonly config: C;
  readonly updated_at?: string;
  readonly updated_by?: string;
  readonly version: number;
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly next: string | null;
}

export interface EntityConfig {
  readonly plan?: string;
  readonly parent?: string;
  readonly limits?: readonly Limit[];
  readonly disabled?: boolean;
  readonly callers?: readonly string[];
  readonly timezone?: string;
  readonly description?: string;
}

export interface PlanConfig {
  readonly limits?: readonly Limit[];
  readonly allowed_resources?: readonly string[];
  readonly max_input_tokens?: number;
  readonly priority?: number;
  readonly description?: string;
}

export interface ResourceConfig {
  readonly price?: Readonly<Record<string, string | number>>;
  readonly limits?: readonly Limit[];
  readonly description?: string;
}

export interface Headroom {
  readonly scope: string;
  readonly name: string;
  readonly metric: string;
  readonly limit: number;
  readonly remaining: number;
  readonly reset_ms: number;
}

export interface AvailableAnswer {
  readonly limits: readonly Headroom[];
  readonly retry_after_ms: number | null;
}

export interface Alert {
  readonly entity: string | null;
  readonly resource: string | null;
  readonly limit: string;
  readonly window: string;
  readonly threshold: number;
  readonly used: number;
  readonly limit_value: number;
  readonly at: string;
  readonly delivered: boolean;
}

export interface AuditEntry {
  readonly id: string;
  readonly at: string;
  readonly who: string;
  readonly action: string;
  readonly kind: string;
  readonly name: string;
  readonly before: Record<string, unknown> | null;
  readonly after: Record<string, unknown> | null;
}

export interface TopItem {
  readonly entity: string;
  readonly usage: Metrics;
  readonly leases: number;
  readonly denied: number;
}

export interface TopAnswer {
  readonly period: string;
  readonly date: string;
  readonly metric: string;
  readonly by?: string;
  readonly items: readonly TopItem[];
  readonly exact: boolean;
  readonly error_bound: number;
}
