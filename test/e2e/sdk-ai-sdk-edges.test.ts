/**
 * `@sluice/client/ai-sdk` at its edges, against the local API: counts a provider reports that
 * are not counts, a fallback no model can be found for, a refusal on the AI SDK's own retry, and
 * a settle that cannot reach Sluice.
 */
import { SluiceClient } from '@sluice/client';
import { refusalOf, SluiceRefusedError, sluiceMiddleware } from '@sluice/client/ai-sdk';
import { estimateTokens } from '@sluice/client/estimate';
import { APICallError, customProvider, generateText, wrapLanguageModel } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { fileApi } from '../support/api.js';
import { meteredLimits, recordedClient } from '../support/recorded-client.js';

const api = fileApi('ai-sdk-edges');
let n = 0;
const MODEL = 'gpt-4o-mini';

const usage = (input: number, output: number) => ({
  inputTokens: { total: input, noCache: input, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: output, text: output, reasoning: 0 },
});
const text = (t: string) => ({
  content: [{ type: 'text' as const, text: t }],
  finishReason: { unified: 'stop' as const, raw: 'stop' },
  warnings: [],
});
const inputOf = (prompt: string) => estimateTokens([{ role: 'user', content: prompt }], MODEL);

function guarded(model: MockLanguageModelV4, entity: string, extra: object = {}) {
  const recorded = recordedClient(api.url);
  const settleErrors: unknown[] = [];
  const wrapped = wrapLanguageModel({
    model,
    middleware: sluiceMiddleware({
      client: recorded.client,
      entity: () => entity,
      request: () => ({ limits: meteredLimits() }),
      onSettleError: (error) => settleErrors.push(error),
      ...extra,
    }),
  });
  return { ...recorded, wrapped, settleErrors };
}

describe('sluiceMiddleware under attack: what is settled', () => {
  // A count that is not one (NaN, as `undefined + n` gives in a provider's own arithmetic) was
  // not reported: the input is charged as estimated, never as 0.
  it('a NaN input count from the provider is charged as estimated, not as 0', async () => {
    const entity = `edge-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({
        ...text('Hi!'),
        usage: {
          inputTokens: { total: Number.NaN, noCache: Number.NaN, cacheRead: 0, cacheWrite: 0 },
          outputTokens: { total: 4, text: 4, reasoning: 0 },
        },
      }),
    });
    const g = guarded(model, entity);

    await generateText({ model: g.wrapped, prompt: 'Hello there, how are you today?' });

    expect(g.releases()).toHaveLength(1);
    expect(g.releases()[0]?.body.usage).toMatchObject({
      input_tokens: inputOf('Hello there, how are you today?'),
      output_tokens: 4,
    });
  });

  // The same for a negative count (a provider's `total - cached` gone wrong): the output is
  // counted from the answer.
  it('a negative output count from the provider is not settled as 0 output tokens', async () => {
    const entity = `edge-${++n}`;
    const answer = 'A longer answer, of several tokens at least.';
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({
        ...text(answer),
        usage: {
          inputTokens: { total: 20, noCache: 20, cacheRead: 0, cacheWrite: 0 },
          outputTokens: { total: -1, text: -1, reasoning: 0 },
        },
      }),
    });
    const g = guarded(model, entity);

    await generateText({ model: g.wrapped, prompt: 'Hello' });

    expect(g.releases()).toHaveLength(1);
    expect(g.releases()[0]?.body.usage).not.toMatchObject({ output_tokens: 0 });
  });
});

describe('sluiceMiddleware under attack: leases that leak', () => {
  // A provider's `languageModel(id)` (customProvider, createProviderRegistry) throws for an id
  // it does not know: the admitted fallback's lease is given back, and the call fails.
  it('a `models` that throws for the admitted fallback gives the lease back', async () => {
    const entity = `edge-${++n}`;
    const large = new MockLanguageModelV4({
      modelId: 'gpt-4o',
      doGenerate: async () => ({ ...text('large'), usage: usage(10, 2) }),
    });
    const provider = customProvider({ languageModels: { 'gpt-4o': large } }); // no gpt-4o-mini
    const recorded = recordedClient(api.url);
    const rpm = [{ name: 'requests', metric: 'requests', limit: 1, per: 2_592_000 }];
    const wrapped = wrapLanguageModel({
      model: large,
      middleware: sluiceMiddleware({
        client: recorded.client,
        entity: () => entity,
        request: () => ({ limits: rpm, fallback: [MODEL] }),
        models: (id) => provider.languageModel(id),
      }),
    });

    await generateText({ model: wrapped, prompt: 'a' }); // uses gpt-4o's one request
    const failed = await generateText({ model: wrapped, prompt: 'b' }).catch((e: unknown) => e);

    expect(failed).toBeInstanceOf(Error); // NoSuchModelError: the call cannot be made
    const acquires = recorded.exchanges.filter((e) => e.path === '/v1/acquire');
    expect(acquires[1]?.answer.resource).toBe(MODEL); // Sluice admitted the fallback
    // Every admitted lease is settled: the first with its usage, the fallback's given back.
    expect(recorded.releases()).toHaveLength(2);
  });
});

describe('sluiceMiddleware under attack: the typed refusal', () => {
  // With the AI SDK's retries (maxRetries, 2 by default), a retryable provider error makes it
  // call the wrapped model again: the middleware acquires again, and Sluice may refuse. The AI
  // SDK then throws a RetryError around the refusal: `refusalOf` finds it, to answer 429.
  it('a refusal on the AI SDK’s retry still reaches the caller as SluiceRefusedError', async () => {
    const entity = `edge-${++n}`;
    const rpm = [{ name: 'rpm', metric: 'requests', limit: 1, per: 'minute' as const }];
    const other = new SluiceClient({ endpoint: api.url });
    // Once the failed attempt's lease is given back, another caller of the same entity takes
    // the minute's one request before the AI SDK retries (deterministic: inside the release).
    const client = new SluiceClient({
      endpoint: api.url,
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        if (new URL(String(input)).pathname === '/v1/release') {
          const taken = await other.acquire({ entity, resource: MODEL, usage: {}, limits: rpm });
          if (!taken.allowed) throw new Error('test setup: the other caller was not admitted');
        }
        return res;
      },
    });
    let attempts = 0;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => {
        attempts++;
        throw new APICallError({
          message: 'provider overloaded',
          url: 'https://provider.example/v1/chat',
          requestBodyValues: {},
          statusCode: 503,
          responseHeaders: { 'retry-after-ms': '10' },
          isRetryable: true,
        });
      },
    });
    const wrapped = wrapLanguageModel({
      model,
      middleware: sluiceMiddleware({
        client,
        entity: () => entity,
        request: () => ({ limits: rpm }),
      }),
    });

    const error = await generateText({ model: wrapped, prompt: 'Hello' }).catch((e) => e);

    expect(attempts).toBe(1); // the retry was refused: the model was not called again
    expect(refusalOf(error)).toBeInstanceOf(SluiceRefusedError);
    expect(refusalOf(error)?.toResponse().status).toBe(429);
  });
});

describe('sluiceMiddleware under attack: a settle that fails', () => {
  // The client answers a release that cannot reach Sluice as degraded, without throwing: the
  // integration still tells `onSettleError` (a lease left holding its estimate is worth an alert).
  it('a release that cannot reach Sluice reaches onSettleError', async () => {
    const entity = `edge-${++n}`;
    const client = new SluiceClient({
      endpoint: api.url,
      retries: 0,
      timeoutMs: 1_000,
      fetch: async (input, init) => {
        if (new URL(String(input)).pathname === '/v1/release') throw new TypeError('fetch failed'); // Sluice gone between acquire and release
        return fetch(input, init);
      },
    });
    const settleErrors: unknown[] = [];
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({ ...text('answered'), usage: usage(10, 2) }),
    });
    const wrapped = wrapLanguageModel({
      model,
      middleware: sluiceMiddleware({
        client,
        entity: () => entity,
        request: () => ({ limits: meteredLimits() }),
        onSettleError: (error) => settleErrors.push(error),
      }),
    });

    const result = await generateText({ model: wrapped, prompt: 'Hello' });

    expect(result.text).toBe('answered'); // the call stands
    expect(result.providerMetadata?.sluice).toMatchObject({ degraded: false }); // a real lease
    expect(settleErrors).toHaveLength(1); // ... whose settle failed: the user must hear of it
  });
});
