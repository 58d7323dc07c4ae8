/**
 * Rate-limit headers existing clients understand: `RateLimit-Policy` / `RateLimit` (IETF
 * httpapi draft), OpenAI-style `x-ratelimit-*`, and `Retry-After` on 429.
 */
import type { Limit, LimitStatus } from '@sluice/core';
import { joinKey } from '@sluice/core/internal';

const WINDOW_SECONDS = { day: 86_400, week: 604_800, month: 2_592_000 } as const;

/**
 * Most limits `RateLimit` and `RateLimit-Policy` name: the tightest (least remaining share),
 * so that a decision over hundreds of limits still has headers a client can read (Node's
 * parser takes 16 KB of them); the body lists every limit.
 */
export const MAX_HEADER_LIMITS = 16;

/** `entity`-scope limits keep their name; others are prefixed with their scope. */
function policyName(status: LimitStatus): string {
  return status.scope === 'entity' ? status.name : `${status.scope}.${status.name}`;
}

/** OpenAI's duration style: 20ms, 1.5s, 6m0s, 1h2m3s. */
export function openAiDuration(ms: number): string {
  if (ms < 1_000) return `${Math.ceil(ms)}ms`;
  const totalSeconds = ms / 1_000;
  if (totalSeconds < 60) return `${Number(totalSeconds.toFixed(3))}s`;
  const h = Math.floor(totalSeconds / 3_600);
  const m = Math.floor((totalSeconds % 3_600) / 60);
  const s = Math.ceil(totalSeconds % 60);
  return h > 0 ? `${h}h${m}m${s}s` : `${m}m${s}s`;
}

/** The tightest limit on a metric: the one with the least remaining. */
function tightest(
  limits: readonly LimitStatus[],
  metrics: readonly string[],
): LimitStatus | undefined {
  for (const metric of metrics) {
    const candidates = limits.filter((l) => l.metric === metric);
    if (candidates.length > 0)
      return candidates.reduce((a, b) => (b.remaining < a.remaining ? b : a));
  }
  return undefined;
}

/**
 * Headers for an acquire answer. `definitions` maps `joinKey(scope, name)` to the limit (for the
 * policy window); `retryAfterMs` adds Retry-After on refusals.
 */
export function rateLimitHeaders(
  statuses: readonly LimitStatus[],
  definitions: ReadonlyMap<string, Limit>,
  retryAfterMs?: number | null,
): Record<string, string> {
  const headers: Record<string, string> = {};
  const share = (s: LimitStatus) => s.remaining / s.limit;
  const shown =
    statuses.length > MAX_HEADER_LIMITS
      ? [...statuses].sort((a, b) => share(a) - share(b)).slice(0, MAX_HEADER_LIMITS)
      : statuses;
  if (statuses.length > 0) {
    headers['ratelimit-policy'] = shown
      .map((s) => {
        const def = definitions.get(joinKey(s.scope, s.name));
        const window = !def
          ? 0
          : def.kind === 'bucket'
            ? def.periodSeconds
            : WINDOW_SECONDS[def.window];
        return `"${policyName(s)}";q=${s.limit};w=${window}`;
      })
      .join(', ');
    headers.ratelimit = shown
      .map(
        (s) => `"${policyName(s)}";r=${Math.max(0, s.remaining)};t=${Math.ceil(s.resetMs / 1_000)}`,
      )
      .join(', ');
  }
  for (const [suffix, metrics] of [
    ['requests', ['requests']],
    ['tokens', ['tokens', 'input_tokens', 'output_tokens']],
  ] as const) {
    const limit = tightest(statuses, metrics);
    if (!limit) continue;
    headers[`x-ratelimit-limit-${suffix}`] = String(limit.limit);
    headers[`x-ratelimit-remaining-${suffix}`] = String(Math.max(0, limit.remaining));
    headers[`x-ratelimit-reset-${suffix}`] = openAiDuration(limit.resetMs);
  }
  if (retryAfterMs !== undefined && retryAfterMs !== null) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(retryAfterMs / 1_000)));
    headers['retry-after-ms'] = String(retryAfterMs);
  }
  return headers;
}
