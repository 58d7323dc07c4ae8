/**
 * The answers the console reads: the server's own response schemas (a type-only import, nothing
 * of it in the page), and the configuration documents as the console's forms edit them.
 */
import type {
  AlertsPageBody,
  AuditPageBody,
  AvailableBody,
  StoredConfigBody,
  TopBody,
  UsageBody,
} from '@sluice/lambdas/responses';

export type Metrics = Readonly<Record<string, number>>;

export type UsageAnswer = UsageBody;
export type UsagePeriod = UsageBody['items'][number];

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

/** A stored document, its configuration typed as the console edits it. */
export type Stored<C = Record<string, unknown>> = Omit<StoredConfigBody, 'config'> & {
  readonly config: C;
};

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

export type AvailableAnswer = AvailableBody;
export type Headroom = AvailableBody['limits'][number];
export type Alert = AlertsPageBody['items'][number];
export type AuditEntry = AuditPageBody['items'][number];
export type TopAnswer = TopBody;
export type TopItem = TopBody['items'][number];
