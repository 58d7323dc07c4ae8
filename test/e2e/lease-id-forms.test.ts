/**
 * A lease id is settled only in the one form it was signed in: copies re-encoded or altered in
 * ways a lenient base64 decoder forgives are 404, over HTTP on the local server.
 */
import { describe, expect, it } from 'vitest';
import { fileApi, post } from '../support/api.js';

const api = fileApi('lease-forms');
let n = 0;

const entity = () => `review-${++n}`;
const acquire = (body: Record<string, unknown>) => post(`${api.url}/v1/acquire`, body);
const remaining = async (body: Record<string, unknown>, name: string) => {
  const seen = await post(`${api.url}/v1/available`, body);
  const limits = seen.body.limits as { name: string; remaining: number }[];
  return limits.find((l) => l.name === name)?.remaining;
};

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('a lease id', () => {
  it('re-encoded, padded or with a spare bit flipped is 404 lease_not_found and changes nothing', async () => {
    const call = {
      entity: entity(),
      resource: 'm',
      // 10,000 tokens per 30 days: one refills every 259 s, so what remains is exact here.
      limits: [{ name: 'tpm', metric: 'tokens', limit: 10_000, per: 2_592_000 }],
    };
    const lease = (await acquire({ ...call, usage: { tokens: 6_000 } })).body.lease_id as string;
    const [body, signature] = lease.split('.') as [string, string];
    const last = signature.at(-1) as string;
    const flipped = ALPHABET[ALPHABET.indexOf(last) ^ 1] as string; // one of the 2 unused bits
    const standard = Buffer.from(signature, 'base64url').toString('base64'); // '+', '/', '='
    const variants = [
      `${body}.${signature}=`,
      `${body}.${standard}`,
      `${body}.${signature.slice(0, 10)} ${signature.slice(10)}`,
      `${body}.${signature}\n`,
      `${body}.${signature.slice(0, -1)}${flipped}`,
    ];

    for (const variant of variants) {
      const answer = await post(`${api.url}/v1/release`, { lease_id: variant });
      expect({ variant, status: answer.status, code: answer.body.code }).toEqual({
        variant,
        status: 404,
        code: 'lease_not_found',
      });
    }
    expect(await remaining(call, 'tpm')).toBe(4_000);
    // The lease as signed still settles, once.
    const released = await post(`${api.url}/v1/release`, { lease_id: lease });
    expect(released.status).toBe(200);
    expect(await remaining(call, 'tpm')).toBe(10_000);
  });
});
