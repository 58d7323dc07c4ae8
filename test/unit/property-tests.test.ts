/**
 * Property tests against real things (DynamoDB Local, the local server) stop at their first
 * failure. fast-check otherwise shrinks a failed run by running the property again, hundreds of
 * times on real I/O: minutes, so the test's timeout ends it and hides the failure it found.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const TEST = fileURLToPath(new URL('..', import.meta.url));

/** The files of the tiers that run against real things. */
const files = ['integration', 'e2e'].flatMap((tier) =>
  readdirSync(join(TEST, tier))
    .filter((name) => name.endsWith('.test.ts'))
    .map((name) => join(tier, name)),
);

/** The text of each `fc.assert(...)` call of `source`, to its closing parenthesis. */
function assertions(source: string): string[] {
  const found: string[] = [];
  for (let at = source.indexOf('fc.assert('); at >= 0; at = source.indexOf('fc.assert(', at + 1)) {
    let depth = 0;
    let end = at + 'fc.assert'.length;
    do {
      const c = source[end];
      if (c === '(') depth++;
      else if (c === ')') depth--;
      end++;
    } while (depth > 0 && end < source.length);
    found.push(source.slice(at, end));
  }
  return found;
}

describe('property tests on real I/O', () => {
  it('finds each assertion whole', () => {
    const source = 'fc.assert(fc.asyncProperty(a, async () => f(1)), { numRuns: 2 }); x(';
    expect(assertions(source)).toEqual([
      'fc.assert(fc.asyncProperty(a, async () => f(1)), { numRuns: 2 })',
    ]);
  });

  it('end on their first failure', () => {
    const lacking = files.flatMap((file) =>
      assertions(readFileSync(join(TEST, file), 'utf8'))
        .filter((call) => !/endOnFailure:\s*true/.test(call))
        .map((call) => `${file}: ${call.slice(0, 60)}…`),
    );
    expect(files.length).toBeGreaterThan(20);
    expect(lacking).toEqual([]);
  });
});
