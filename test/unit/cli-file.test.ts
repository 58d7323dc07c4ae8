/**
 * `sluice plan` and `sluice apply` validate the whole file before they send anything
 * (packages/cli/src/file.ts): an entity's own limits together with its plan's when the file holds
 * both, as the admin API checks them when it stores the entity. A quota with budget alerts may not
 * land on an item another enforced limit may shard; the refusal names its place in the file.
 */

import { parseDesired } from '@sluice/cli';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

/** A daily quota with alerts, in plan `pro`; `entities` is the YAML of the entities section. */
const file = (entities: string, plan = 'pro') =>
  parse(`
plans:
  ${plan}:
    limits:
      - { name: daily, metric: tokens, limit: 1000000, window: day, alerts: [0.5] }
entities:
${entities}`);

/** What parseDesired throws, as `sluice` prints it. */
function refusal(raw: unknown): string | undefined {
  try {
    parseDesired(raw);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

describe('an entity with its plan, in one file', () => {
  it("refuses a limit that would shard the item of its plan's quota with alerts", () => {
    const message = refusal(
      file(`
  acme:
    plan: pro
    limits:
      - { name: tpm, metric: tokens, limit: 100000, per: minute, shards: 4 }
`),
    );
    expect(message).toMatch(/^entities\.acme\.limits\[0\]\.shards: would shard the item where/);
    expect(message).toContain('plan pro\'s quota "daily" has budget alerts');
  });

  it("refuses its own quota with alerts beside its plan's limit that may shard the item", () => {
    const message = refusal(
      parse(`
plans:
  default:
    limits:
      - { name: tpm, metric: tokens, limit: 100000, per: minute, max_shards: 8 }
entities:
  acme:
    limits:
      - { name: rpm, metric: requests, limit: 600, per: minute }
      - { name: monthly, metric: tokens, limit: 5000000, window: month, alerts: [0.8] }
`),
    );
    // No plan named: the plan named `default`.
    expect(message).toMatch(/^entities\.acme\.limits\[1\]\.alerts: budget alerts are not/);
    expect(message).toContain('"tpm" of plan default asks for up to 8 shards');
  });

  it("accepts the quota overridden without alerts, a shadow limit's shards, and other plans", () => {
    const shards = '- { name: tpm, metric: tokens, limit: 100000, per: minute, shards: 4 }';
    expect(
      refusal(
        file(`
  without-alerts:
    plan: pro
    limits:
      - { name: daily, metric: tokens, limit: 1000000, window: day, alerts: [] }
      ${shards}
  shadow:
    plan: pro
    limits:
      - { name: tpm, metric: tokens, limit: 100000, per: minute, shards: 4, mode: shadow }
  elsewhere:
    plan: free
    limits:
      ${shards}
  no-plan:
    limits:
      ${shards}
`),
      ),
    ).toBeUndefined();
    // A plan that is only stored is the admin API's to check, as it stands then.
    expect(
      refusal(
        file(
          `
  acme:
    plan: free
    limits:
      ${shards}
`,
          'enterprise',
        ),
      ),
    ).toBeUndefined();
  });
});

describe('a number no document can hold', () => {
  it('is refused as not finite, naming its place (YAML reads 1e400 as Infinity, .nan as NaN)', () => {
    for (const value of ['1e400', '-.inf', '.nan']) {
      const raw = parse(
        `plans:\n  p:\n    limits:\n      - { name: t, metric: tokens, limit: ${value}, per: minute }\n`,
      );
      expect(refusal(raw)).toBe('plans.p.limits[0].limit: not a finite number');
    }
  });
});
