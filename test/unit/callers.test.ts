import { CALLER_PATTERN, callerMatches, checkCallers, entitySchema } from '@sluice/core/internal';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { like } from '../support/iam-proxy.js';

const ACCOUNT = '111122223333';
const role = (name: string) => `arn:aws:iam::${ACCOUNT}:role/${name}`;
const session = (roleName: string, name = 'i-0abc') =>
  `arn:aws:sts::${ACCOUNT}:assumed-role/${roleName}/${name}`;

describe('callers: which principals a pattern matches', () => {
  it('matches an assumed-role session as its role, and as itself', () => {
    expect(callerMatches([role('team-a-*')], session('team-a-api'))).toBe(true);
    expect(callerMatches([role('team-a-api')], session('team-a-api'))).toBe(true);
    expect(
      callerMatches([session('team-a-api', 'batch-*')], session('team-a-api', 'batch-7')),
    ).toBe(true);
    expect(callerMatches([session('team-a-api', 'batch-*')], session('team-a-api', 'web-1'))).toBe(
      false,
    );
    expect(callerMatches([role('team-a-*')], session('team-b-api'))).toBe(false);
    // Every principal of one account, sessions included (as their roles).
    expect(callerMatches([`arn:aws:iam::${ACCOUNT}:*`], session('anything'))).toBe(true);
    expect(
      callerMatches([`arn:aws:iam::${ACCOUNT}:*`], 'arn:aws:sts::444455556666:assumed-role/x/s'),
    ).toBe(false);
    expect(
      callerMatches(
        ['arn:aws:iam::*:role/team-a-*'],
        'arn:aws:sts::444455556666:assumed-role/team-a-x/s',
      ),
    ).toBe(true);
    // The same role name in another account is another principal.
    expect(
      callerMatches([role('team-a-*')], 'arn:aws:sts::444455556666:assumed-role/team-a-api/s'),
    ).toBe(false);
  });

  it('matches users and roots exactly, `?` as one character, and nothing without a principal', () => {
    expect(
      callerMatches([`arn:aws:iam::${ACCOUNT}:user/ci-?`], `arn:aws:iam::${ACCOUNT}:user/ci-1`),
    ).toBe(true);
    expect(
      callerMatches([`arn:aws:iam::${ACCOUNT}:user/ci-?`], `arn:aws:iam::${ACCOUNT}:user/ci-10`),
    ).toBe(false);
    expect(callerMatches([`arn:aws:iam::${ACCOUNT}:root`], `arn:aws:iam::${ACCOUNT}:root`)).toBe(
      true,
    );
    expect(callerMatches([role('*')], undefined)).toBe(false);
    expect(callerMatches([role('*')], '')).toBe(false);
    // Regular-expression characters in a pattern are literal: `.` is a dot, not any character.
    expect(callerMatches([role('svc.api')], session('svcXapi'))).toBe(false);
    expect(callerMatches([role('svc.api')], session('svc.api'))).toBe(true);
  });

  it('agrees with IAM StringLike (the IAM test proxy’s) on generated patterns and principals', () => {
    const chars = fc.constantFrom('a', 'b', '-', '.', '/');
    const text = fc.array(chars, { maxLength: 12 }).map((c) => c.join(''));
    const pattern = fc.array(fc.oneof(chars, fc.constant('*'), fc.constant('?')), {
      maxLength: 10,
    });
    fc.assert(
      fc.property(pattern, text, (parts, name) => {
        const p = role(parts.join(''));
        const principal = role(name);
        expect(callerMatches([p], principal)).toBe(like(p, principal)); // IAM's StringLike
      }),
      { numRuns: 2_000 },
    );
  });

  it('stays fast on a pattern of many wildcards that would make a regular expression backtrack', () => {
    const pattern = role(`${'a*'.repeat(40)}b`);
    const principal = session('a'.repeat(64));
    expect(callerMatches([pattern], principal)).toBe(false); // returns at all: the point
  });

  it('refuses when any level that names callers does not match', () => {
    const levels = [[role('team-a-api')], [role('team-a-*')]];
    expect(() => checkCallers(levels, 'key-1', session('team-a-api'))).not.toThrow();
    expect(() => checkCallers(levels, 'key-1', session('team-a-worker'))).toThrow(
      expect.objectContaining({ code: 'caller_not_allowed' }),
    );
    expect(() => checkCallers(levels, 'key-1', undefined)).toThrow(/no caller identity/);
    expect(() => checkCallers([], 'key-1', undefined)).not.toThrow();
  });
});

describe('callers: the patterns an entity may store', () => {
  it.each([
    role('team-a-*'),
    `arn:aws:iam::${ACCOUNT}:user/ci`,
    `arn:aws:iam::${ACCOUNT}:root`,
    session('team-a-api', '*'),
    `arn:aws:sts::${ACCOUNT}:federated-user/bob`,
    `arn:aws-cn:iam::${ACCOUNT}:role/x`,
    `arn:aws-us-gov:iam::${ACCOUNT}:role/path/to/x`,
    'arn:aws:iam::*:role/team-a-*',
    'arn:aws:iam::1111222233??:role/x',
    `arn:aws:iam::${ACCOUNT}:*`,
    `arn:aws:sts::${ACCOUNT}:assumed-role/team-a-*`,
  ])('takes %s', (pattern) => {
    expect(CALLER_PATTERN.test(pattern)).toBe(true);
  });

  it.each([
    ['*', 'not an ARN'],
    ['arn:aws:iam::12345:role/x', 'a short account'],
    ['arn:aws:iam::1234567890123:role/x', 'a long account'],
    [`arn:aws:s3:::bucket`, 'not a principal'],
    [`arn:aws:iam::${ACCOUNT}:group/devs`, 'a group is no principal'],
    [`arn:aws:iam::${ACCOUNT}:`, 'no principal at all'],
    [`arn:aws:iam::${ACCOUNT}:policy/*`, 'a policy is no principal'],
    [`arn:aws:iam::${ACCOUNT}:role/`, 'no role name'],
    [`arn:aws:sts::${ACCOUNT}:role/x`, 'a role is an iam ARN'],
    [`arn:aws:iam::${ACCOUNT}:role/a b`, 'a space'],
  ])('refuses %s (%s)', (pattern) => {
    expect(CALLER_PATTERN.test(pattern)).toBe(false);
    const parsed = entitySchema.safeParse({ callers: [role('ok'), pattern] });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0]?.path).toEqual(['callers', 1]);
  });

  it('refuses an empty list (nobody at all is not what an empty list should mean)', () => {
    const parsed = entitySchema.safeParse({ callers: [] });
    expect(parsed.error?.issues[0]?.message).toMatch(/at least one caller/);
  });
});
