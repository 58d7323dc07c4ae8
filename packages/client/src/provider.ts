/**
 * Backing off on a provider's own 429: how long its headers say to wait.
 * Understands `retry-after-ms`, `retry-after` (seconds or an HTTP date), OpenAI's
 * `x-ratelimit-reset-requests` / `-tokens` ("6m0s", "1.5s", "20ms") and Anthropic's
 * `anthropic-ratelimit-*-reset` (RFC 3339 instants).
 */

type HeaderSource = Headers | Readonly<Record<string, string | string[] | undefined>>;

function get(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function')
    return (headers as Headers).get(name) ?? undefined;
  const record = headers as Readonly<Record<string, string | string[] | undefined>>;
  const value = Object.entries(record).find(([k]) => k.toLowerCase() === name)?.[1];
  return Array.isArray(value) ? value[0] : value;
}

/** "6m0s", "1.5s", "20ms", "1h2m3s" → milliseconds. */
export function parseDuration(text: string): number | undefined {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text.trim()) return undefined;
  const unit = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0);
}

/**
 * Milliseconds a provider asks a caller to wait, or undefined if its headers do not say.
 *
 * @example
 * const res = await fetch(openAiUrl, init);
 * if (res.status === 429) await sleep(providerRetryAfterMs(res.headers) ?? 1_000);
 */
export function providerRetryAfterMs(
  headers: HeaderSource,
  nowMs = Date.now(),
): number | undefined {
  const ms = get(headers, 'retry-after-ms');
  if (ms !== undefined && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const after = get(headers, 'retry-after');
  if (after !== undefined) {
    if (/^\d+(\.\d+)?$/.test(after.trim())) return Math.ceil(Number(after) * 1_000);
    const at = Date.parse(after);
    if (!Number.isNaN(at)) return Math.max(0, at - nowMs);
  }
  const waits: number[] = [];
  for (const name of ['x-ratelimit-reset-requests', 'x-ratelimit-reset-tokens']) {
    const value = get(headers, name);
    const parsed = value === undefined ? undefined : parseDuration(value);
    if (parsed !== undefined) waits.push(parsed);
  }
  for (const kind of ['requests', 'tokens', 'input-tokens', 'output-tokens']) {
    const value = get(headers, `anthropic-ratelimit-${kind}-reset`);
    const at = value === undefined ? Number.NaN : Date.parse(value);
    if (!Number.isNaN(at)) waits.push(Math.max(0, at - nowMs));
  }
  // Every exhausted limit must have reset: wait for the latest.
  return waits.length > 0 ? Math.ceil(Math.max(...waits)) : undefined;
}

/** A provider answer that may be a 429. */
export interface ProviderAttempt<T> {
  readonly status: number;
  readonly headers: HeaderSource;
  readonly value: T;
}

/**
 * Calls `attempt` until it is not a 429, waiting as the provider says (or with exponential
 * backoff and full jitter when it does not say), at most `maxAttempts` times.
 */
export async function withProviderBackoff<T>(
  attempt: () => Promise<ProviderAttempt<T>>,
  options: {
    maxAttempts?: number;
    baseDelayMs?: number;
    maxDelayMs?: number;
    /** How to wait. @default setTimeout */
    sleep?: (ms: number) => Promise<void>;
  } = {},
): Promise<ProviderAttempt<T>> {
  const { maxAttempts = 4, baseDelayMs = 500, maxDelayMs = 60_000 } = options;
  const sleep =
    options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (let i = 1; ; i++) {
    const result = await attempt();
    if (result.status !== 429 || i >= maxAttempts) return result;
    const said = providerRetryAfterMs(result.headers);
    const delay = Math.min(maxDelayMs, said ?? Math.random() * baseDelayMs * 2 ** (i - 1));
    await sleep(delay);
  }
}
