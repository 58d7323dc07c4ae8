/**
 * SluiceAdmin's conditional writes and the CLI's `--entity`, attacked: one document's tag never
 * matches another's, a condition that cannot be sent is refused naming it (not as Sluice
 * unreachable), hostile entity names filter only their own entries, and commands that take no
 * `--entity` refuse it.
 */
import { SluiceAdmin } from '@sluice/client';
import { describe, expect, it } from 'vitest';
import { fileApi } from '../support/api.js';
import { runCli } from '../support/cli.js';

const api = fileApi('admin-conditions');
const admin = () => new SluiceAdmin({ endpoint: api.url });
const doc = { limits: [{ name: 'rpm', metric: 'requests', limit: 10, per: 'minute' }] };

describe('SluiceAdmin conditional writes', () => {
  it('never match another document with one document’s etag', async () => {
    // Documents of the same content written in the same millisecond by the same caller.
    const names = Array.from({ length: 40 }, (_, i) => `ac-twin-${i}`);
    const stored = await Promise.all(names.map((n) => admin().put('entity', n, doc)));
    const byTag = new Map<string, string>();
    let pair: [string, string, string] | undefined;
    for (const [i, s] of stored.entries()) {
      const seen = byTag.get(s.etag ?? '');
      if (seen !== undefined && !pair) pair = [seen, names[i] as string, s.etag ?? ''];
      byTag.set(s.etag ?? '', names[i] as string);
    }
    // A tag read from one document (a) cannot write over another (b)...
    const [, b, tagOfA] = pair ?? ['', names[1] as string, stored[0]?.etag ?? ''];
    const edited = { limits: [{ ...doc.limits[0], limit: 99 }] };
    const written = await admin()
      .put('entity', b, edited, { ifMatch: tagOfA })
      .then(
        (s) => `written: version ${s.version}`,
        (e: { code?: string }) => e.code,
      );
    expect.soft(written).toBe('precondition_failed');
    // ...as each document has its own tag.
    expect.soft(byTag.size).toBe(names.length);
    expect((await admin().get('entity', b))?.version).toBe(1);
  });

  it.each([
    ['a newline', '"1-abc"\n'],
    ['CRLF and another header', '"1-abc"\r\nx-evil: 1'],
    ['a non-Latin-1 character', '"1-✓"'],
  ])('refuse an ifMatch with %s naming it, not as Sluice unreachable', async (_, ifMatch) => {
    const name = `ac-bad-tag-${ifMatch.length}`;
    await admin().put('entity', name, doc);
    const write = admin().put('entity', name, { limits: [] }, { ifMatch });
    await expect(write).rejects.toThrow(/if-?match/i);
    await expect(write).rejects.not.toMatchObject({ code: 'unavailable' });
    expect((await admin().get('entity', name))?.version).toBe(1);
  });
});

const cli = (...argv: string[]) => runCli(api.url, ...argv);

describe('sluice --entity', () => {
  it('lists only that entity’s audit entries, whatever its name', async () => {
    await admin().put('entity', 'constructor', doc);
    await admin().put('entity', 'ac-cli-other', doc);
    for (const name of ['constructor', 'toString', '&x=1', '%2F']) {
      const run = await cli('audit', '--entity', name);
      expect(run.code).toBe(0);
      expect(run.out).not.toContain('ac-cli-other');
    }
    expect((await cli('audit', '--entity', 'constructor')).out).toContain('put entity constructor');
  });

  it.each([['top'], ['get', 'entity'], ['usage', 'ac-cli-other']])(
    'is refused by %s, which would answer for every entity unfiltered',
    async (...command) => {
      const run = await cli(...command, '--entity', 'ac-cli-nobody');
      expect({ code: run.code, err: run.err }).toMatchObject({
        code: 2,
        err: expect.stringContaining('--entity'),
      });
    },
  );
});
