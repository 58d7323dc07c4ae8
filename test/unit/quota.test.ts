/**
 * Calendar quotas (packages/core/src/engine/quota.ts) as the pure functions they are: what each
 * plans for a given stored window, exactly. Internal to @sluice/core, so imported by path.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyLocally } from '../../packages/core/src/engine/items.js';
import {
  quotaConsume,
  quotaDebt,
  quotaFits,
  quotaRefund,
  quotaStatus,
} from '../../packages/core/src/engine/quota.js';
import type { Step } from '../../packages/core/src/engine/step.js';
import type { ItemState } from '../../packages/core/src/store/types.js';
import { quota, quotaState } from '../support/stored.js';

const at = (iso: string) => Date.parse(iso);
const NOW = at('2026-03-10T15:00:00Z');
const TODAY = at('2026-03-10T00:00:00Z');
const TOMORROW = at('2026-03-11T00:00:00Z');
const YESTERDAY = at('2026-03-09T00:00:00Z');
const DAILY = quota(1_000);
const FULL = { priority: 100, mayDeny: true };
const nsUntil = (endMs: number, nowMs = NOW) => BigInt(endMs - nowMs) * 1_000_000n;
const leased = (windowStartMs: number) => ({ ...DAILY, windowStartMs });

const newWindowCondition = (startMs: number) => ({
  or: [{ absent: 'w_daily' }, { attr: 'w_daily', op: '<', value: BigInt(startMs) }],
});

function applied(state: ItemState | undefined, step: Step): ItemState {
  if (step.kind !== 'write') throw new Error(`expected a write, got ${step.kind}`);
  return applyLocally(state ?? {}, step.set);
}

describe('quotaConsume', () => {
  it('opens the window when nothing is known, if no later one is stored', () => {
    const step = quotaConsume(DAILY, undefined, NOW, 100, FULL);

    expect(step).toEqual({
      kind: 'write',
      set: [
        { attr: 'w_daily', value: BigInt(TODAY) },
        { attr: 'u_daily', value: 100n },
      ],
      condition: newWindowCondition(TODAY),
      horizonNs: nsUntil(TOMORROW), // the window's state matters until it ends
    });
  });

  it('starts a new window over an older one, whatever it used', () => {
    const step = quotaConsume(DAILY, quotaState(YESTERDAY, 1_000n), NOW, 100, FULL);

    expect(step).toEqual(quotaConsume(DAILY, undefined, NOW, 100, FULL));
  });

  it('adds to the same window, conditioned on room for the amount', () => {
    const step = quotaConsume(DAILY, quotaState(TODAY, 300n), NOW, 100, FULL);

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'u_daily', add: 100n }],
      condition: {
        and: [
          { attr: 'w_daily', op: '=', value: BigInt(TODAY) },
          { attr: 'u_daily', op: '<=', value: 900n },
        ],
      },
      horizonNs: nsUntil(TOMORROW),
    });
  });

  it('denies past the limit until the window ends', () => {
    const step = quotaConsume(DAILY, quotaState(TODAY, 950n), NOW, 100, FULL);

    expect(step).toEqual({ kind: 'deny', retryAfterNs: nsUntil(TOMORROW) });
  });

  it('admits exactly up to the limit', () => {
    expect(quotaConsume(DAILY, quotaState(TODAY, 900n), NOW, 100, FULL).kind).toBe('write');
  });

  it('leaves a refusal from a state it may not trust to the table', () => {
    const step = quotaConsume(DAILY, quotaState(TODAY, 950n), NOW, 100, {
      ...FULL,
      mayDeny: false,
    });

    expect(step).toMatchObject({
      kind: 'write',
      condition: { and: [{}, { attr: 'u_daily', op: '<=', value: 900n }] },
    });
  });

  it('keeps the rest of the quota for higher priorities', () => {
    const state = quotaState(TODAY, 450n);

    expect(quotaConsume(DAILY, state, NOW, 50, { ...FULL, priority: 50 }).kind).toBe('write');
    expect(quotaConsume(DAILY, state, NOW, 51, { ...FULL, priority: 50 }).kind).toBe('deny');
  });

  it('joins a window that a process whose clock is ahead already opened', () => {
    const beforeMidnight = TOMORROW - 1_000;
    const dayAfter = at('2026-03-12T00:00:00Z');

    const step = quotaConsume(DAILY, quotaState(TOMORROW, 5n), beforeMidnight, 10, FULL);

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'u_daily', add: 10n }],
      condition: {
        and: [
          { attr: 'w_daily', op: '=', value: BigInt(TOMORROW) },
          { attr: 'u_daily', op: '<=', value: 990n },
        ],
      },
      horizonNs: nsUntil(dayAfter, beforeMidnight),
    });
  });

  it('counts in the calendar of its time zone', () => {
    const monthly = quota(1_000, 'month', 'America/New_York');

    const step = quotaConsume(monthly, undefined, NOW, 1, FULL);

    expect(step).toMatchObject({
      set: [{ value: BigInt(at('2026-03-01T05:00:00Z')) }, {}],
      horizonNs: nsUntil(at('2026-04-01T04:00:00Z')), // after the spring DST change
    });
  });
});

describe('quotaFits', () => {
  it('fits what the priority’s share of the limit holds', () => {
    expect(quotaFits(DAILY, 1_000, 100)).toBe(true);
    expect(quotaFits(DAILY, 1_001, 100)).toBe(false);
    expect(quotaFits(DAILY, 330, 33)).toBe(true);
    expect(quotaFits(DAILY, 331, 33)).toBe(false);
  });
});

describe('quotaDebt', () => {
  it('adds to the lease’s window with no cap while it is current', () => {
    const step = quotaDebt(leased(TODAY), quotaState(TODAY, 1_000n), NOW, 50n);

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'u_daily', add: 50n }],
      condition: { attr: 'w_daily', op: '=', value: BigInt(TODAY) },
      horizonNs: nsUntil(TOMORROW),
    });
  });

  it('assumes the lease’s window holds when nothing is known and it is still current', () => {
    const step = quotaDebt(leased(TODAY), undefined, NOW, 50n);

    expect(step).toMatchObject({ set: [{ attr: 'u_daily', add: 50n }] });
  });

  it('charges the current window once the lease’s has ended', () => {
    const fromMemory = quotaDebt(leased(YESTERDAY), undefined, NOW, 50n);
    const fromState = quotaDebt(leased(TODAY), quotaState(YESTERDAY, 7n), NOW, 50n);

    for (const step of [fromMemory, fromState]) {
      expect(step).toEqual({
        kind: 'write',
        set: [
          { attr: 'w_daily', value: BigInt(TODAY) },
          { attr: 'u_daily', value: 50n },
        ],
        condition: newWindowCondition(TODAY),
        horizonNs: nsUntil(TOMORROW),
      });
    }
  });

  it('takes the window past its limit: what remains goes negative', () => {
    const state = quotaState(TODAY, 990n);

    const debted = applied(state, quotaDebt(leased(TODAY), state, NOW, 50n));

    expect(quotaStatus(DAILY, debted, NOW).remaining).toBe(-40n);
  });
});

describe('quotaRefund', () => {
  it('takes back from the lease’s own window while it is current', () => {
    const step = quotaRefund(leased(TODAY), quotaState(TODAY, 300n), NOW, 100n);

    expect(step).toEqual({
      kind: 'write',
      set: [{ attr: 'u_daily', add: -100n }],
      condition: { attr: 'w_daily', op: '=', value: BigInt(TODAY) },
    });
  });

  it('writes the same refund when nothing is known of the item', () => {
    expect(quotaRefund(leased(TODAY), undefined, NOW, 100n)).toEqual(
      quotaRefund(leased(TODAY), quotaState(TODAY, 300n), NOW, 100n),
    );
  });

  it('frees nothing once the window has moved on', () => {
    expect(quotaRefund(leased(YESTERDAY), undefined, NOW, 100n)).toEqual({ kind: 'skip' });
    expect(quotaRefund(leased(TODAY), quotaState(TOMORROW, 1n), NOW, 100n)).toEqual({
      kind: 'skip',
    });
  });

  it('skips a window the item does not hold, on the condition that it still does not', () => {
    const older = quotaRefund(leased(TODAY), quotaState(YESTERDAY, 300n), NOW, 100n);
    const none = quotaRefund(leased(TODAY), { g: 1n }, NOW, 100n);

    for (const step of [older, none])
      expect(step).toEqual({ kind: 'skip', assuming: newWindowCondition(TODAY) });
  });

  it('undoes a consume of the same amount in the same window', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.nat(),
        fc.nat(),
        fc.boolean(),
        (limit, usedSeed, wanted, known) => {
          const daily = quota(limit);
          const used = usedSeed % limit;
          const amount = 1 + (wanted % (limit - used));
          const state = known ? quotaState(TODAY, BigInt(used)) : undefined;

          const taken = applied(state, quotaConsume(daily, state, NOW, amount, FULL));
          const refund = quotaRefund(leased(TODAY), taken, NOW, BigInt(amount));
          const back = applied(taken, refund);

          expect(quotaStatus(daily, back, NOW)).toEqual(quotaStatus(daily, state, NOW));
          if (state) expect(back).toEqual(state);
        },
      ),
      { seed: 20_260_310, numRuns: 300 },
    );
  });
});

describe('quotaStatus', () => {
  it('shows what remains of the current window and when it ends', () => {
    expect(quotaStatus(DAILY, quotaState(TODAY, 300n), NOW)).toEqual({
      remaining: 700n,
      resetMs: TOMORROW - NOW,
      windowStartMs: TODAY,
    });
  });

  it('shows an older window, or none, as the whole limit', () => {
    expect(quotaStatus(DAILY, quotaState(YESTERDAY, 300n), NOW).remaining).toBe(1_000n);
    expect(quotaStatus(DAILY, undefined, NOW).remaining).toBe(1_000n);
  });

  it('shows the later window a clock ahead opened, until its end', () => {
    const beforeMidnight = TOMORROW - 1_000;

    expect(quotaStatus(DAILY, quotaState(TOMORROW, 5n), beforeMidnight)).toEqual({
      remaining: 995n,
      resetMs: 86_401_000,
      windowStartMs: TOMORROW,
    });
  });
});
