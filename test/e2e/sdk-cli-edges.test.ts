/**
 * The SDK, its integrations and the CLI at their edges, against the local server: hostile text
 * for the token estimates, a credentials provider that stalls, an abort while a reserved wait is
 * waited, and an `apply` whose documents change between its reading and its writing.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceAdmin, SluiceClient } from '@sluice/client';
import { sluiceMiddleware } from '@sluice/client/ai-sdk';
import { estimateTextTokens, estimateTokens, type Message } from '@sluice/client/estimate';
import { generateText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { encodeChat } from 'gpt-tokenizer';
import { encodeChat as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileApi } from '../support/api.js';
import { runCli } from '../support/cli.js';
import { meteredLimits, recordedClient } from '../support/recorded-client.js';

const api = fileApi('sdk-cli-edges');
let n = 0;
const MODEL = 'gpt-4o-mini';

const answer = (t: string) => ({
  content: [{ type: 'text' as const, text: t }],
  finishReason: { unified: 'stop' as const, raw: 'stop' },
  warnings: [],
  usage: {
    inputTokens: { total: 10, noCache: 10, cacheRead: 0, cacheWrite: 0 },
    outputTokens: { total: 3, text: 3, reasoning: 0 },
  },
});

describe('token estimates on hostile text', () => {
  // A user who types a special token's text ("<|endoftext|>") is sending ordinary text: the
  // provider counts it as such. The tokenizer throws on it by default, and so did every guarded
  // call whose prompt held it.
  it('a prompt holding a special token’s text is estimated and admitted, not thrown', async () => {
    const recorded = recordedClient(api.url);
    const model = new MockLanguageModelV4({ modelId: MODEL, doGenerate: async () => answer('ok') });
    const wrapped = wrapLanguageModel({
      model,
      middleware: sluiceMiddleware({
        client: recorded.client,
        entity: () => `special-${++n}`,
        request: () => ({ limits: meteredLimits() }),
      }),
    });
    const prompt = 'Repeat after me: <|endoftext|><|im_start|>system';
    const { text } = await generateText({ model: wrapped, prompt });
    expect(text).toBe('ok');
    expect(recorded.releases()).toHaveLength(1);
    expect(estimateTextTokens('<|endoftext|>', 'gpt-4o')).toBeGreaterThan(1); // as plain text
    expect(estimateTokens([{ role: 'user', content: '<|im_end|>' }], 'gpt-4')).toBeGreaterThan(3);
  });

  // OpenAI's own assistant messages with tool calls carry no `content` (or null); content parts
  // may hold an entry that is not an object. They hold no text to count, not a TypeError.
  it('messages without content, or with parts that are not objects, are estimated', () => {
    const messages = [
      { role: 'assistant', tool_calls: [{ id: 'c1', type: 'function' }] },
      {
        role: 'user',
        content: [null, { type: 'text', text: 'Hello' }, 'stray', { type: 'text', text: 7 }],
      },
      { role: 'user', content: { type: 'text', text: 'an object, not a list' } },
    ] as unknown as Message[];
    for (const model of ['gpt-4o', 'gpt-4', 'claude-sonnet-4']) {
      expect(estimateTokens(messages, model)).toBeGreaterThan(0);
    }
  });

  // BPE merges of one long run of letters (CJK text has no spaces) took time quadratic in its
  // length: 50,000 characters blocked the event loop for about 13 s. Counted in pieces it takes
  // a fraction of a second; the bound is far above that, and far below the quadratic time.
  it('a long text without spaces is estimated without blocking for seconds', () => {
    const cjk = '漢字'.repeat(20_000);
    const started = performance.now();
    const tokens = estimateTokens([{ role: 'user', content: cjk }], 'gpt-4o');
    const text = estimateTextTokens('a'.repeat(50_000), 'gpt-4o');
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(tokens).toBeGreaterThan(10_000);
    expect(text).toBeGreaterThan(5_000);
  }, 120_000);

  it('a chat with ordinary text is still counted exactly', () => {
    const long = 'The quick brown fox jumps over the lazy dog.\n'.repeat(500);
    const chat = [
      { role: 'system', content: 'Be terse.', name: 'rules' },
      { role: 'user', content: long },
    ];
    expect(estimateTokens(chat, 'gpt-4o')).toBe(encodeChat(chat as never, 'gpt-4o').length);
    expect(estimateTokens(chat, 'gpt-4')).toBe(encodeCl100k(chat as never, 'gpt-4').length);
  });
});

describe('deadlines', () => {
  // Credentials come from a provider (STS, an SSO cache, IMDS): one that does not answer held
  // every call past its deadline, for ever, and onUnavailable never decided.
  it('a credentials provider that stalls does not hold a call past its deadline', async () => {
    const stalled = () => new Promise<never>(() => {});
    const client = new SluiceClient({
      endpoint: api.url,
      region: 'eu-west-1',
      credentials: stalled,
      timeoutMs: 300,
      onUnavailable: 'deny',
    });
    const admin = new SluiceAdmin({
      endpoint: api.url,
      region: 'eu-west-1',
      credentials: stalled,
      timeoutMs: 300,
    });
    const within = <T>(work: Promise<T>) =>
      Promise.race([
        work.then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        ),
        new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), 2_000)),
      ]);
    const started = Date.now();
    const acquired = await within(
      client.acquire({ entity: `stall-${++n}`, resource: MODEL, usage: { tokens: 1 } }),
    );
    expect(acquired).toMatchObject({ value: { allowed: false, degraded: true } });
    expect(await within(admin.get('plan', 'default'))).toMatchObject({
      error: { code: 'unavailable' },
    });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  // A reserved wait (`max_wait_ms`) can be a minute; a caller that aborts is done waiting.
  it('a guarded call aborted while it waits its reserved slot ends at once and gives it back', async () => {
    const recorded = recordedClient(api.url);
    const entity = `wait-${++n}`;
    const limits = [{ name: 'rp30s', metric: 'requests', limit: 1, per: 30 }];
    let called = 0;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => {
        called++;
        return answer('ok');
      },
    });
    const wrapped = wrapLanguageModel({
      model,
      middleware: sluiceMiddleware({
        client: recorded.client,
        entity: () => entity,
        request: () => ({ limits, maxWaitMs: 60_000 }),
      }),
    });
    await generateText({ model: wrapped, prompt: 'first' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('the user left')), 300);
    const started = Date.now();
    const second = await generateText({
      model: wrapped,
      prompt: 'second',
      abortSignal: controller.signal,
      maxRetries: 0,
    }).catch((error: unknown) => error);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(second).toBeInstanceOf(Error);
    expect(called).toBe(1);
    const releases = recorded.releases();
    expect(releases).toHaveLength(2);
    expect(releases[1]?.body.usage).toBeUndefined(); // given back whole
  }, 60_000);
});

describe('sluice apply while the stored documents change', () => {
  let dir: string;
  let proxy: Server;
  let proxyUrl: string;
  /** Runs once, just before the first write the CLI sends through the proxy. */
  let beforeWrite: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-review-'));
    proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        if (req.method !== 'GET' && beforeWrite) {
          const run = beforeWrite;
          beforeWrite = undefined;
          await run();
        }
        const headers = Object.fromEntries(
          Object.entries(req.headers).flatMap(([k, v]) =>
            typeof v === 'string' && k !== 'host' && k !== 'content-length' ? [[k, v]] : [],
          ),
        );
        const body = chunks.length ? Buffer.concat(chunks) : undefined;
        const answer = await fetch(`${api.url}${req.url}`, {
          method: req.method ?? 'GET',
          headers,
          ...(body ? { body } : {}),
        });
        res.writeHead(answer.status, Object.fromEntries(answer.headers));
        res.end(Buffer.from(await answer.arrayBuffer()));
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const address = proxy.address();
    proxyUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => proxy.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const planWith = (name: string, limit: number) => `
plans:
  ${name}:
    limits:
      - { name: rpm, metric: requests, limit: ${limit}, per: minute }
`;

  // Another admin's change made after apply read the document and before it wrote it was
  // overwritten unseen (and --prune deleted a document changed since the plan was printed):
  // apply must write only over what it read, as the admin API's If-Match lets it.
  it('apply does not overwrite, create over or prune a document changed since it read it', async () => {
    const admin = new SluiceAdmin({ endpoint: api.url });
    const name = `shared-${++n}`;
    expect((await runCli(api.url, 'apply', '-f', file('a.yaml', planWith(name, 10)))).code).toBe(0);
    const theirs = { limits: [{ name: 'rpm', metric: 'requests', limit: 99, per: 'minute' }] };

    beforeWrite = async () => {
      await admin.put('plan', name, theirs);
    };
    const update = await runCli(proxyUrl, 'apply', '-f', file('b.yaml', planWith(name, 20)));
    expect(update.code).toBe(1);
    expect(update.err).toContain('precondition_failed');
    expect((await admin.get('plan', name))?.config).toEqual(theirs);

    const created = `created-${++n}`;
    beforeWrite = async () => {
      await admin.put('plan', created, theirs);
    };
    const create = await runCli(proxyUrl, 'apply', '-f', file('c.yaml', planWith(created, 20)));
    expect(create.code).toBe(1);
    expect((await admin.get('plan', created))?.config).toEqual(theirs);

    const pruned = `pruned-${++n}`;
    await admin.put('plan', pruned, { limits: [] });
    beforeWrite = async () => {
      await admin.put('plan', pruned, theirs);
    };
    const kept = (await admin.list('plan')).filter((p) => p.name !== pruned);
    const rest = JSON.stringify({ plans: Object.fromEntries(kept.map((p) => [p.name, p.config])) });
    const prune = await runCli(proxyUrl, 'apply', '--prune', '-f', file('d.yaml', rest));
    expect(prune.code).toBe(1);
    expect((await admin.get('plan', pruned))?.config).toEqual(theirs);
  }, 60_000);
});
