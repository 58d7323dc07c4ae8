/**
 * `orAfter`: a shared read's answer, or what takes its place once it is late (the signing keys'
 * and the configuration cache's bound on a read that hangs).
 */
import { orAfter } from '@sluice/core/internal';
import { describe, expect, it, vi } from 'vitest';

const never = () => new Promise<string>(() => {});

describe('orAfter', () => {
  it('answers with the work when it settles in time, and never asks for the stand-in', async () => {
    const instead = vi.fn(async () => 'instead');
    expect(await orAfter(Promise.resolve('work'), 1_000, instead)).toBe('work');
    await expect(orAfter(Promise.reject(new Error('no')), 1_000, instead)).rejects.toThrow('no');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(instead).not.toHaveBeenCalled();
  });

  it('answers with the stand-in, its value or its error, once the work is late', async () => {
    expect(await orAfter(never(), 5, async () => 'again')).toBe('again');
    await expect(
      orAfter(never(), 5, () => Promise.reject(new Error('not read in time'))),
    ).rejects.toThrow('not read in time');
  });

  it('takes whichever settles first, the work after its time included', async () => {
    let finish: (value: string) => void = () => {};
    const work = new Promise<string>((resolve) => {
      finish = resolve;
    });
    const answer = orAfter(work, 0, () => {
      setTimeout(() => finish('work, late'), 1);
      return never();
    });
    expect(await answer).toBe('work, late');
  });
});
