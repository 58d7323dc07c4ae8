/**
 * `@sluice/client/langchain` on LangChain's fake chat model, against the local API over HTTP:
 * an invoke and a stream settle the usage the model reported, to the token; a model that reports
 * none is charged its estimate of input and its counted output; a stream aborted or failing
 * midway settles what it streamed, one aborted before any output gives everything back; a
 * refusal throws SluiceRefusedError before the model runs (LangChain awaits the handler and
 * raises its error); and each run settles once, whatever repeats.
 */

import type { CallbackManagerForLLMRun } from '@langchain/core/callbacks/manager';
import { AIMessage, AIMessageChunk, type BaseMessage } from '@langchain/core/messages';
import { ChatGenerationChunk, type ChatResult } from '@langchain/core/outputs';
import { FakeListChatModel } from '@langchain/core/utils/testing';
import { SluiceClient } from '@sluice/client';
import { estimateTextTokens, estimateTokens } from '@sluice/client/estimate';
import { SluiceCallbackHandler, SluiceRefusedError } from '@sluice/client/langchain';
import { describe, expect, it } from 'vitest';
import { fileApi } from '../support/api.js';
import { meteredLimits, recordedClient } from '../support/recorded-client.js';

const api = fileApi('langchain');
let n = 0;
const MODEL = 'gpt-4o-mini';

const usageMetadata = (input: number, output: number, cacheRead = 0) => ({
  input_tokens: input,
  output_tokens: output,
  total_tokens: input + output,
  input_token_details: { cache_read: cacheRead },
});

/**
 * LangChain's FakeListChatModel, reporting usage as a provider's model does (on the message, and
 * on a stream's last chunk), named `MODEL`, failing after `failAfter` chunks when asked; it counts
 * the calls that reached it.
 */
class UsageChatModel extends FakeListChatModel {
  calls = 0;
  /** Runs as the model is called, before it answers. */
  onCall: (() => Promise<void>) | undefined;
  constructor(
    private readonly usage: ReturnType<typeof usageMetadata> | undefined,
    responses: string[],
    private readonly failAfter?: number,
  ) {
    super({ responses });
  }
  override getLsParams(options: this['ParsedCallOptions']) {
    return { ...super.getLsParams(options), ls_model_name: MODEL };
  }
  override async _generate(
    messages: BaseMessage[],
    options: this['ParsedCallOptions'],
    runManager?: CallbackManagerForLLMRun,
  ): Promise<ChatResult> {
    this.calls++;
    await this.onCall?.();
    const result = await super._generate(messages, options, runManager);
    const text = String(result.generations[0]?.text);
    const message = new AIMessage({ content: text });
    if (this.usage) Object.assign(message, { usage_metadata: this.usage });
    return { generations: [{ text, message }] };
  }
  override async *_streamResponseChunks(
    _messages: BaseMessage[],
    options: this['ParsedCallOptions'],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    this.calls++;
    const text = this.responses[0] ?? '';
    const pieces = text.split(/(?<= )/);
    for (const [i, piece] of pieces.entries()) {
      if (options.signal?.aborted) return;
      if (i === this.failAfter) throw new Error('provider dropped');
      const message = new AIMessageChunk({ content: piece });
      if (i === pieces.length - 1 && this.usage)
        Object.assign(message, { usage_metadata: this.usage });
      const chunk = new ChatGenerationChunk({ text: piece, message });
      yield chunk;
      await runManager?.handleLLMNewToken(piece, undefined, undefined, undefined, undefined, {
        chunk,
      });
    }
  }
}

function guarded(limits: object[] = meteredLimits()) {
  const recorded = recordedClient(api.url);
  const settleErrors: unknown[] = [];
  const handler = new SluiceCallbackHandler({
    client: recorded.client,
    request: () => ({ limits: limits as never }),
    onSettleError: (error) => settleErrors.push(error),
  });
  return { ...recorded, handler, settleErrors };
}

const inputOf = (prompt: string) => estimateTokens([{ role: 'human', content: prompt }], MODEL);

describe('SluiceCallbackHandler: what is settled', () => {
  it('an invoke settles the usage_metadata the model reported', async () => {
    const entity = `lc-${++n}`;
    const g = guarded();
    const model = new UsageChatModel(usageMetadata(90, 12, 40), ['Hello there']);

    const answer = await model.invoke('Hi', {
      callbacks: [g.handler],
      metadata: { sluice_entity: entity },
    });

    expect(answer.content).toBe('Hello there');
    const acquired = g.exchanges.find((e) => e.path === '/v1/acquire');
    expect(acquired?.body).toMatchObject({
      entity,
      resource: MODEL,
      usage: { input_tokens: inputOf('Hi'), output_tokens: 1_000 },
    });
    expect(g.releases()).toHaveLength(1);
    expect(await g.used(entity, MODEL)).toEqual({
      input_tokens: 90,
      output_tokens: 12,
      cached_input_tokens: 40,
      requests: 1,
    });
  });

  it('a stream read to the end settles its chunks’ usage', async () => {
    const entity = `lc-${++n}`;
    const g = guarded();
    const model = new UsageChatModel(usageMetadata(60, 5), ['Once upon a time']);

    let text = '';
    const stream = await model.stream('Tell me', {
      callbacks: [g.handler],
      metadata: { sluice_entity: entity },
    });
    for await (const chunk of stream) text += chunk.content;

    expect(text).toBe('Once upon a time');
    expect(g.releases()).toHaveLength(1);
    expect(await g.used(entity, MODEL)).toMatchObject({ input_tokens: 60, output_tokens: 5 });
  });

  it('a model that reports no usage is charged its estimated input and counted output', async () => {
    const entity = `lc-${++n}`;
    const g = guarded();
    const model = new UsageChatModel(undefined, ['Plain answer']);

    await model.invoke('Hi', { callbacks: [g.handler], metadata: { sluice_entity: entity } });

    const settled = {
      input_tokens: inputOf('Hi'),
      output_tokens: estimateTextTokens('Plain answer', MODEL),
    };
    expect(g.releases()[0]?.body.usage).toEqual(settled);
    expect(await g.used(entity, MODEL)).toMatchObject(settled);
  });

  it('a stream aborted midway settles the input estimated and the output it streamed', async () => {
    const entity = `lc-${++n}`;
    const g = guarded();
    const model = new UsageChatModel(usageMetadata(60, 5), ['Once upon a time there was']);
    const abort = new AbortController();

    let text = '';
    const failure = await (async () => {
      const stream = await model.stream('Tell me', {
        callbacks: [g.handler],
        metadata: { sluice_entity: entity },
        signal: abort.signal,
      });
      for await (const chunk of stream) {
        text += chunk.content;
        if (text === 'Once upon ') abort.abort();
      }
    })().catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(Error);
    expect(text).toBe('Once upon ');
    await expect.poll(() => g.releases().length).toBe(1);
    // A model reports each chunk to its callbacks after handing it on, as providers' models do:
    // the chunk in the reader's hand when it aborted ('upon ') was never reported.
    const settled = {
      input_tokens: inputOf('Tell me'),
      output_tokens: estimateTextTokens('Once ', MODEL),
    };
    expect(g.releases()[0]?.body.usage).toEqual(settled);
    expect(await g.used(entity, MODEL)).toMatchObject(settled);
  });

  it('a stream failing midway settles what it streamed; failing before any, gives it back', async () => {
    const entity = `lc-${++n}`;
    const g = guarded();
    const midway = new UsageChatModel(usageMetadata(60, 5), ['Partial answer here'], 2);
    const atOnce = new UsageChatModel(usageMetadata(60, 5), ['Nothing'], 0);
    const read = async (model: UsageChatModel) => {
      let text = '';
      const failure = await (async () => {
        const stream = await model.stream('Tell me', {
          callbacks: [g.handler],
          metadata: { sluice_entity: entity },
        });
        for await (const chunk of stream) text += chunk.content;
      })().catch((error: unknown) => error);
      return { text, failure };
    };

    const first = await read(midway);
    const second = await read(atOnce);

    expect(first).toMatchObject({
      text: 'Partial answer ',
      failure: { message: 'provider dropped' },
    });
    expect(second).toMatchObject({ text: '', failure: { message: 'provider dropped' } });
    expect(g.releases().map((r) => r.body.usage)).toEqual([
      { input_tokens: inputOf('Tell me'), output_tokens: estimateTextTokens(first.text, MODEL) },
      undefined,
    ]);
    expect(await g.used(entity, MODEL)).toMatchObject({
      input_tokens: inputOf('Tell me'),
      output_tokens: estimateTextTokens('Partial answer ', MODEL),
      requests: 1,
    });
  });
});

describe('SluiceCallbackHandler: refusals and settling once', () => {
  it('a refusal throws SluiceRefusedError and the model is never called', async () => {
    const entity = `lc-${++n}`;
    const g = guarded([{ name: 'rpm', metric: 'requests', limit: 1, per: 'minute' }]);
    const model = new UsageChatModel(usageMetadata(10, 2), ['ok']);
    const config = { callbacks: [g.handler], metadata: { sluice_entity: entity } };

    await model.invoke('first', config);
    const refused = await model.invoke('second', config).catch((e: unknown) => e);
    const streamed = await (async () => {
      for await (const _ of await model.stream('third', config));
    })().catch((e: unknown) => e);

    expect(refused).toBeInstanceOf(SluiceRefusedError);
    expect(refused).toMatchObject({ code: 'rate_limited', status: 429 });
    expect((refused as SluiceRefusedError).retryAfterMs).toBeGreaterThan(0);
    expect((refused as SluiceRefusedError).violations[0]).toMatchObject({ name: 'rpm' });
    expect(Number((refused as SluiceRefusedError).headers['retry-after'])).toBeGreaterThan(0);
    expect(streamed).toBeInstanceOf(SluiceRefusedError);
    expect(model.calls).toBe(1);
  });

  it('a second end or error of the same run sends nothing', async () => {
    const entity = `lc-${++n}`;
    const g = guarded();
    const model = new UsageChatModel(usageMetadata(30, 3), ['Hi']);
    let runId: string | undefined;
    const recorder = {
      handleChatModelStart: (...args: unknown[]) => {
        runId = args[2] as string;
      },
    };

    const answer = await model.invoke('Hi', {
      callbacks: [g.handler, recorder],
      metadata: { sluice_entity: entity },
    });
    const id = String(runId);
    await g.handler.handleLLMEnd({ generations: [[{ text: 'Hi', message: answer } as never]] }, id);
    await g.handler.handleLLMError(new Error('late'), id);

    expect(g.releases()).toHaveLength(1);
    expect(g.settleErrors).toEqual([]);
    expect(await g.used(entity, MODEL)).toMatchObject({ input_tokens: 30, output_tokens: 3 });
  });

  it('a lease settled elsewhere: the call still answers, the 409 goes to onSettleError', async () => {
    const entity = `lc-${++n}`;
    const g = guarded();
    const other = new SluiceClient({ endpoint: api.url });
    const model = new UsageChatModel(usageMetadata(30, 3), ['answered']);
    model.onCall = async () => {
      const leaseId = g.exchanges.find((e) => e.path === '/v1/acquire')?.answer.lease_id;
      await other.release(String(leaseId)); // something else settles it first
    };

    const answer = await model.invoke('Hi', {
      callbacks: [g.handler],
      metadata: { sluice_entity: entity },
    });

    expect(answer.content).toBe('answered');
    expect(g.releases()).toHaveLength(1);
    expect(g.releases()[0]?.status).toBe(409);
    expect(g.settleErrors).toMatchObject([{ code: 'lease_settled' }]);
  });
});
