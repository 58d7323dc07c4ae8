/**
 * `@sluice/client/ai-sdk` around the AI SDK's own mock language model, against the local API
 * over HTTP: what each call settles, read back from Sluice, is what the mock reported, to the
 * token (generateText, streamText read to the end, object generation, a tool loop's steps); a
 * stream aborted or failing midway settles the input estimated and the output it streamed; a
 * refusal throws SluiceRefusedError and the mock is never called; and whatever repeats (two
 * finish parts, an abort after the finish, a lease settled elsewhere), one release is sent and
 * the call never fails for it.
 */
import { SluiceClient } from '@sluice/client';
import { fromAISDK, SluiceRefusedError, sluiceMiddleware } from '@sluice/client/ai-sdk';
import { estimateTextTokens, estimateTokens } from '@sluice/client/estimate';
import {
  generateText,
  isStepCount,
  Output,
  simulateReadableStream,
  streamText,
  tool,
  wrapLanguageModel,
} from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { fileApi } from '../support/api.js';
import { meteredLimits, recordedClient } from '../support/recorded-client.js';

const api = fileApi('ai-sdk');
let n = 0;
const MODEL = 'gpt-4o-mini';

/** A provider's stream part (`LanguageModelV4StreamPart`). */
type Part =
  Awaited<ReturnType<MockLanguageModelV4['doStream']>>['stream'] extends ReadableStream<infer P>
    ? P
    : never;
const usage = (input: number, output: number, cacheRead = 0) => ({
  inputTokens: { total: input, noCache: input - cacheRead, cacheRead, cacheWrite: 0 },
  outputTokens: { total: output, text: output, reasoning: 0 },
});
const finish = (input: number, output: number) => ({
  type: 'finish' as const,
  finishReason: { unified: 'stop' as const, raw: 'stop' },
  usage: usage(input, output),
});
const text = (t: string) => ({
  content: [{ type: 'text' as const, text: t }],
  finishReason: { unified: 'stop' as const, raw: 'stop' },
  warnings: [],
});
const deltas = (...pieces: string[]): Part[] => [
  { type: 'text-start', id: 't' },
  ...pieces.map((delta) => ({ type: 'text-delta' as const, id: 't', delta })),
];

/** A provider stream that sends `parts` and then stalls (or, once they are read, fails with `error`). */
function stalling(parts: Part[], error?: Error): ReadableStream<Part> {
  const left = [...parts];
  return new ReadableStream(
    {
      pull(controller) {
        const part = left.shift();
        if (part) controller.enqueue(part);
        else if (error) controller.error(error);
        else return new Promise(() => {}); // no more parts, and no end
      },
    },
    { highWaterMark: 0 },
  );
}

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

/** The input the middleware estimates for a one-message prompt. */
const inputOf = (prompt: string) => estimateTokens([{ role: 'user', content: prompt }], MODEL);

describe('sluiceMiddleware: what is settled', () => {
  it('generateText settles the usage the provider reported, cache reads included', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({ ...text('Hi!'), usage: usage(120, 30, 20) }),
    });
    const g = guarded(model, entity);

    const result = await generateText({ model: g.wrapped, prompt: 'Hello', maxOutputTokens: 500 });

    expect(result.text).toBe('Hi!');
    expect(result.providerMetadata?.sluice).toEqual({
      resource: MODEL,
      fellBack: false,
      degraded: false,
    });
    const acquired = g.exchanges.find((e) => e.path === '/v1/acquire');
    expect(acquired?.body.usage).toEqual({ input_tokens: inputOf('Hello'), output_tokens: 500 });
    expect(g.releases()).toHaveLength(1);
    expect(await g.used(entity, MODEL)).toEqual({
      input_tokens: 120,
      output_tokens: 30,
      cached_input_tokens: 20,
      requests: 1,
    });
  });

  it('streamText read to the end settles the finish part’s usage, before the stream closes', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doStream: async () => ({
        stream: simulateReadableStream<Part>({
          chunks: [...deltas('Hel', 'lo'), { type: 'text-end', id: 't' }, finish(50, 7)],
        }),
      }),
    });
    const g = guarded(model, entity);

    const result = streamText({ model: g.wrapped, prompt: 'Hello' });

    expect(await result.text).toBe('Hello');
    expect(g.releases()).toHaveLength(1); // already sent when the text is complete
    expect(await g.used(entity, MODEL)).toMatchObject({ input_tokens: 50, output_tokens: 7 });
    expect((await result.providerMetadata)?.sluice).toMatchObject({ resource: MODEL });
  });

  it('a provider reporting no usage is charged its input as estimated and its output counted', async () => {
    const none = {
      inputTokens: {
        total: undefined,
        noCache: undefined,
        cacheRead: undefined,
        cacheWrite: undefined,
      },
      outputTokens: { total: undefined, text: undefined, reasoning: undefined },
    };
    const answer = 'A longer answer, of several tokens at least.';
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({ ...text(answer), usage: none }),
      doStream: async () => ({
        stream: simulateReadableStream<Part>({
          chunks: [
            ...deltas(answer),
            { type: 'text-end', id: 't' },
            { ...finish(0, 0), usage: none },
          ],
        }),
      }),
    });
    const g = guarded(model, entity);

    await generateText({ model: g.wrapped, prompt: 'Hello' });
    expect(await streamText({ model: g.wrapped, prompt: 'Hello' }).text).toBe(answer);

    const output = estimateTextTokens(answer, MODEL);
    expect(output).toBeGreaterThan(5);
    expect(await g.used(entity, MODEL)).toMatchObject({
      input_tokens: 2 * inputOf('Hello'),
      output_tokens: 2 * output,
      requests: 2,
    });
  });

  it('object generation settles the usage reported', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({ ...text('{"city":"Oslo"}'), usage: usage(80, 9) }),
    });
    const g = guarded(model, entity);

    const result = await generateText({
      model: g.wrapped,
      prompt: 'Where?',
      output: Output.object({ schema: z.object({ city: z.string() }) }),
    });

    expect(result.output).toEqual({ city: 'Oslo' });
    expect(await g.used(entity, MODEL)).toMatchObject({ input_tokens: 80, output_tokens: 9 });
  });

  it('a tool loop settles each step: both steps’ usage, two leases', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: [
        {
          content: [
            { type: 'tool-call', toolCallId: 'c1', toolName: 'weather', input: '{"city":"Oslo"}' },
          ],
          finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
          usage: usage(100, 15),
          warnings: [],
        },
        { ...text('Sunny in Oslo.'), usage: usage(140, 6) },
      ],
    });
    const g = guarded(model, entity);

    const result = await generateText({
      model: g.wrapped,
      prompt: 'Weather in Oslo?',
      tools: {
        weather: tool({
          inputSchema: z.object({ city: z.string() }),
          execute: async ({ city }) => `sunny in ${city}`,
        }),
      },
      stopWhen: isStepCount(2),
    });

    expect(result.text).toBe('Sunny in Oslo.');
    expect(model.doGenerateCalls).toHaveLength(2);
    expect(g.releases()).toHaveLength(2);
    expect(await g.used(entity, MODEL)).toMatchObject({
      input_tokens: 240,
      output_tokens: 21,
      requests: 2,
    });
  });

  it('a stream aborted midway settles the input estimated and the output it streamed', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doStream: async () => ({ stream: stalling(deltas('Once upon', ' a time')) }),
    });
    const g = guarded(model, entity);
    const abort = new AbortController();

    const result = streamText({ model: g.wrapped, prompt: 'A story', abortSignal: abort.signal });
    let seen = '';
    for await (const piece of result.textStream) {
      seen += piece;
      if (seen === 'Once upon a time') abort.abort();
    }

    await expect.poll(() => g.releases().length).toBe(1);
    const settled = {
      input_tokens: inputOf('A story'),
      output_tokens: estimateTextTokens(seen, MODEL),
    };
    expect(g.releases()[0]?.body.usage).toEqual(settled);
    expect(await g.used(entity, MODEL)).toMatchObject(settled);
  });

  it('a stream aborted before any output gives the reservation back', async () => {
    const entity = `ai-${++n}`;
    const abort = new AbortController();
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doStream: async () => {
        setImmediate(() => abort.abort()); // once the call has begun, before any output
        return { stream: stalling([{ type: 'stream-start', warnings: [] }]) };
      },
    });
    const g = guarded(model, entity);

    const result = streamText({ model: g.wrapped, prompt: 'A story', abortSignal: abort.signal });
    await result.consumeStream();

    await expect.poll(() => g.releases().length).toBe(1);
    expect(g.releases()[0]?.body.usage).toBeUndefined();
    expect(await g.used(entity, MODEL)).toMatchObject({ input_tokens: 0, output_tokens: 0 });
  });

  it('a stream that fails midway settles what it streamed, and the error reaches the caller', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doStream: async () => ({
        stream: stalling(deltas('Partial', ' answer'), new Error('provider dropped')),
      }),
    });
    const g = guarded(model, entity);

    const result = streamText({ model: g.wrapped, prompt: 'Hello' });
    let seen = '';
    const failure = await (async () => {
      for await (const piece of result.textStream) seen += piece;
    })().catch((error: unknown) => error);

    expect(seen).toBe('Partial answer');
    expect((failure as Error).message).toBe('provider dropped');
    expect(g.releases()).toHaveLength(1);
    const settled = {
      input_tokens: inputOf('Hello'),
      output_tokens: estimateTextTokens('Partial answer', MODEL),
    };
    expect(g.releases()[0]?.body.usage).toEqual(settled);
    expect(await g.used(entity, MODEL)).toMatchObject(settled);
  });
}, 60_000);

describe('sluiceMiddleware: refusals and fallbacks', () => {
  it('throws SluiceRefusedError with Sluice’s wait and headers, and never calls the model', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({ ...text('ok'), usage: usage(10, 2) }),
      doStream: async () => ({ stream: simulateReadableStream<Part>({ chunks: [finish(1, 1)] }) }),
    });
    const g = guarded(model, entity, {
      request: () => ({ limits: [{ name: 'rpm', metric: 'requests', limit: 1, per: 'minute' }] }),
    });

    await generateText({ model: g.wrapped, prompt: 'first' });
    const refused = await generateText({ model: g.wrapped, prompt: 'second' }).catch((e) => e);
    const errors: unknown[] = [];
    await streamText({
      model: g.wrapped,
      prompt: 'third',
      onError: ({ error }) => void errors.push(error),
    }).consumeStream();

    expect(refused).toBeInstanceOf(SluiceRefusedError);
    expect(refused).toMatchObject({ code: 'rate_limited', status: 429 });
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(refused.violations[0]).toMatchObject({ name: 'rpm', limit: 1 });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    const response: Response = refused.toResponse();
    expect(response.status).toBe(429);
    expect(await response.json()).toMatchObject({ code: 'rate_limited' });
    expect(errors[0]).toBeInstanceOf(SluiceRefusedError);
    expect(model.doGenerateCalls).toHaveLength(1);
    expect(model.doStreamCalls).toHaveLength(0);
  });

  it('calls the model `models` gives for an admitted fallback, and says so', async () => {
    const entity = `ai-${++n}`;
    const large = new MockLanguageModelV4({
      modelId: 'gpt-4o',
      doGenerate: async () => ({ ...text('large'), usage: usage(10, 2) }),
    });
    const small = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => ({ ...text('small'), usage: usage(11, 3) }),
    });
    const recorded = recordedClient(api.url);
    const rpm = [{ name: 'requests', metric: 'requests', limit: 1, per: 2_592_000 }];
    let who = entity;
    const middleware = (models?: (id: string) => MockLanguageModelV4) =>
      sluiceMiddleware({
        client: recorded.client,
        entity: () => who,
        request: () => ({ limits: rpm, fallback: [MODEL] }),
        ...(models ? { models } : {}),
      });
    const wrapped = wrapLanguageModel({ model: large, middleware: middleware(() => small) });

    const first = await generateText({ model: wrapped, prompt: 'a' });
    const second = await generateText({ model: wrapped, prompt: 'b' });
    who = `${entity}-b`;
    await recorded.client.acquire({ entity: who, resource: 'gpt-4o', usage: {}, limits: rpm });
    const third = await generateText({
      model: wrapLanguageModel({ model: large, middleware: middleware() }),
      prompt: 'c',
    }).catch((e) => e);

    expect([first.text, second.text]).toEqual(['large', 'small']);
    expect(second.providerMetadata?.sluice).toEqual({
      resource: MODEL,
      fellBack: true,
      degraded: false,
    });
    // Without `models`, an admitted fallback is given back and the call throws: nothing is called.
    expect(third).toMatchObject({ code: 'fallback_not_callable' });
    expect(large.doGenerateCalls).toHaveLength(1);
    expect(small.doGenerateCalls).toHaveLength(1);
  });
});

describe('sluiceMiddleware: settled exactly once', () => {
  it('two finish parts, or an abort after the finish, send one release', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doStream: async () => ({
        stream: simulateReadableStream<Part>({
          chunks: [...deltas('Hi'), { type: 'text-end', id: 't' }, finish(40, 4), finish(99, 99)],
        }),
      }),
    });
    const g = guarded(model, entity);
    const abort = new AbortController();

    const result = streamText({ model: g.wrapped, prompt: 'Hello', abortSignal: abort.signal });
    expect(await result.text).toBe('Hi');
    abort.abort();

    expect(g.releases()).toHaveLength(1);
    expect(g.settleErrors).toEqual([]);
    expect(await g.used(entity, MODEL)).toMatchObject({ input_tokens: 40, output_tokens: 4 });
  });

  it('a stream failing after its finish part keeps the finish’s usage', async () => {
    const entity = `ai-${++n}`;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doStream: async () => ({
        stream: stalling([...deltas('Hi'), finish(30, 3)], new Error('late failure')),
      }),
    });
    const g = guarded(model, entity);

    await streamText({ model: g.wrapped, prompt: 'Hello', onError: () => {} }).consumeStream();

    expect(g.releases()).toHaveLength(1);
    expect(await g.used(entity, MODEL)).toMatchObject({ input_tokens: 30, output_tokens: 3 });
  });

  it('a lease settled elsewhere: the call still answers, the 409 goes to onSettleError', async () => {
    const entity = `ai-${++n}`;
    const other = new SluiceClient({ endpoint: api.url });
    let g: ReturnType<typeof guarded> | undefined;
    const model = new MockLanguageModelV4({
      modelId: MODEL,
      doGenerate: async () => {
        const leaseId = g?.exchanges.find((e) => e.path === '/v1/acquire')?.answer.lease_id;
        await other.release(String(leaseId)); // something else settles it first
        return { ...text('answered'), usage: usage(10, 2) };
      },
    });
    g = guarded(model, entity);

    const result = await generateText({ model: g.wrapped, prompt: 'Hello' });

    expect(result.text).toBe('answered');
    expect(g.releases()).toHaveLength(1);
    expect(g.releases()[0]?.status).toBe(409);
    expect(g.settleErrors).toMatchObject([{ code: 'lease_settled' }]);
  });
});

describe('fromAISDK', () => {
  it('maps a provider’s usage and a result’s usage alike', () => {
    expect(fromAISDK(usage(120, 30, 20))).toEqual({
      input_tokens: 120,
      output_tokens: 30,
      cached_input_tokens: 20,
    });
    expect(
      fromAISDK({
        inputTokens: 120,
        outputTokens: 30,
        inputTokenDetails: { cacheReadTokens: 20, cacheWriteTokens: 5 },
      }),
    ).toEqual({
      input_tokens: 120,
      output_tokens: 30,
      cached_input_tokens: 20,
      cache_write_tokens: 5,
    });
  });
});
