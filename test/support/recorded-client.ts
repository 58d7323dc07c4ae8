/**
 * A SluiceClient whose every request is recorded (path, body, status, answer), for the framework
 * integrations' tests: how many releases a call sent and with what, and what Sluice holds after.
 */
import { SluiceClient } from '@sluice/client';

export interface Exchange {
  readonly path: string;
  readonly body: Record<string, unknown>;
  readonly status: number;
  readonly answer: Record<string, unknown>;
}

/** Limits on each metric a call settles, over 30 days: what is used reads back exactly. */
export const meteredLimits = (limit = 10_000) =>
  ['input_tokens', 'output_tokens', 'cached_input_tokens', 'requests'].map((metric) => ({
    name: metric,
    metric,
    limit,
    per: 2_592_000,
  }));

export function recordedClient(url: string, onSettleError?: (error: unknown) => void) {
  const exchanges: Exchange[] = [];
  const client = new SluiceClient({
    endpoint: url,
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      const text = await res.clone().text();
      exchanges.push({
        path: new URL(String(input)).pathname,
        body: JSON.parse(String(init?.body ?? '{}')) as Record<string, unknown>,
        status: res.status,
        answer: text ? (JSON.parse(text) as Record<string, unknown>) : {},
      });
      return res;
    },
  });
  const releases = () => exchanges.filter((e) => e.path === '/v1/release');
  /** What `entity` has used of each metric of {@link meteredLimits} on `resource`. */
  const used = async (entity: string, resource: string, limit = 10_000) => {
    const answer = await client.available({ entity, resource, limits: meteredLimits(limit) });
    return Object.fromEntries(answer.limits.map((l) => [l.name, limit - l.remaining]));
  };
  return { client, exchanges, releases, used, onSettleError };
}
