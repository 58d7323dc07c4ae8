/**
 * `@sluice/client/langchain` at its edges, against the local API: a stream that reported its
 * usage as it began and then failed, a model that reports an empty usage, and a call of several
 * prompts of which one is refused.
 */
import type { CallbackManagerForLLMRun } from '@langchain/core/callbacks/manager';
import {
  AIMessage,
  AIMessageChunk,
  type BaseMessage,
  HumanMessage,
  type UsageMetadata,
} from '@langchain/core/messages';
import { ChatGenerationChunk, type ChatResult } from '@langchain/core/outputs';
import { FakeListChatModel } from '@langchain/core/utils/testing';
import { estimateTextTokens } from '@sluice/client/estimate';
import { SluiceCallbackHandler, SluiceRefusedError } from '@sluice/client/langchain';
import { describe, expect, it } from 'vitest';
import { fileApi } from '../support/api.js';
import { meteredLimits, recordedClient } from '../support/recorded-client.js';

const api = fileApi('langchain-edges');
let n = 0;
const MODEL = 'claude-sonnet-4-5';

/**
 * A chat model streaming as @langchain/anthropic's ChatAnthropic does: the first chunk
 * (Anthropic's `message_start`) carries `usage_metadata` with the input tokens and the output
 * so far (1), the text chunks carry none, the last (`message_delta`) carries the output. Each
 * chunk is reported to the callbacks with `handleLLMNewToken(token, …, { chunk })` after it is
 * yielded. It fails after `failAfter` text chunks when asked.
 */
class AnthropicLikeModel extends FakeListChatModel {
  calls = 0;
  constructor(
    responses: string[],
    private readonly startUsage: UsageMetadata | undefined,
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
    const result = await super._generate(messages, options, runManager);
    const text = String(result.generations[0]?.text);
    const message = new AIMessage({ content: text });
    Object.assign(message, {
      usage_metadata: { input_tokens: 10, output_tokens: 2, total_tokens: 12 },
    });
    return { generations: [{ text, message }] };
  }
  override async *_streamResponseChunks(
    _messages: BaseMessage[],
    _options: this['ParsedCallOptions'],
    runManager?: CallbackManagerForLLMRun,
  ): AsyncGenerator<ChatGenerationChunk> {
    this.calls++;
    const report = async (chunk: ChatGenerationChunk) =>
      runManager?.handleLLMNewToken(chunk.text, undefined, undefined, undefined, undefined, {
        chunk,
      });
    if (this.startUsage) {
      const start = new ChatGenerationChunk({
        text: '',
        message: Object.assign(new AIMessageChunk({ content: '' }), {
          usage_metadata: this.startUsage,
        }),
      });
      yield start;
      await report(start);
    }
    const pieces = (this.responses[0] ?? '').split(/(?<= )/);
    for (const [i, piece] of pieces.entries()) {
      if (i === this.failAfter) throw new Error('overloaded_error'); // Anthropic's mid-stream error
      const chunk = new ChatGenerationChunk({
        text: piece,
        message: new AIMessageChunk({ content: piece }),
      });
      yield chunk;
      await report(chunk);
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

const acquires = (g: ReturnType<typeof guarded>) =>
  g.exchanges.filter((e) => e.path === '/v1/acquire');

describe('SluiceCallbackHandler under attack: what is settled', () => {
  // A stream failed midway settles what was used so far. ChatAnthropic reports usage_metadata
  // on its first chunk (the input, and an output of 1); a stream that then streams a long answer
  // and fails has used that answer's output tokens: at least what it streamed is charged.
  it('a stream failing midway after a first chunk with usage charges the output it streamed', async () => {
    const entity = `edge-${++n}`;
    const g = guarded();
    const answer =
      'Once upon a time there was a long story that went on and on for many words before it broke';
    const model = new AnthropicLikeModel(
      [answer],
      { input_tokens: 50, output_tokens: 1, total_tokens: 51 },
      15,
    );

    let seen = '';
    const failure = await (async () => {
      const stream = await model.stream('Tell me', {
        callbacks: [g.handler],
        metadata: { sluice_entity: entity },
      });
      for await (const chunk of stream) seen += chunk.content;
    })().catch((error: unknown) => error);

    expect((failure as Error).message).toBe('overloaded_error');
    expect(estimateTextTokens(seen, MODEL)).toBeGreaterThan(10);
    expect(g.releases()).toHaveLength(1);
    const settled = g.releases()[0]?.body.usage as Record<string, number>;
    expect(settled.input_tokens).toBe(50);
    expect(settled.output_tokens).toBeGreaterThanOrEqual(estimateTextTokens(seen, MODEL));
  });
});

describe('SluiceCallbackHandler under attack: a model that reports no usage', () => {
  // A model that reports no usage is charged its estimated input and its output counted from
  // its text. Community OpenAI-style chat models answer `llmOutput.tokenUsage = {}` (and no
  // usage_metadata) when the provider sent no usage: that is no report, not a report of 0.
  it('llmOutput.tokenUsage = {} (no counts) is charged the estimate, not 0', async () => {
    const entity = `edge-${++n}`;
    const g = guarded();
    const answer = 'A plain answer of a good number of tokens, with no usage reported.';
    class NoUsageModel extends AnthropicLikeModel {
      override async _generate(): Promise<ChatResult> {
        this.calls++;
        return {
          generations: [{ text: answer, message: new AIMessage(answer) }],
          llmOutput: { tokenUsage: {} },
        };
      }
    }
    const model = new NoUsageModel([answer], undefined);

    await model.invoke('Hi', { callbacks: [g.handler], metadata: { sluice_entity: entity } });

    expect(g.releases()).toHaveLength(1);
    const settled = g.releases()[0]?.body.usage as Record<string, number>;
    expect(settled.input_tokens).toBeGreaterThan(0);
    expect(settled.output_tokens).toBe(estimateTextTokens(answer, MODEL));
  });
});

describe('SluiceCallbackHandler under attack: a refusal leaves no lease behind', () => {
  // `generate([[...], [...]])` starts one run per conversation at once; when one is refused,
  // LangChain throws without calling the model and ends none of the others: the conversation
  // admitted is given back (the call cost nothing).
  it('generate() of two conversations, one refused: the admitted one is given back', async () => {
    const entity = `edge-${++n}`;
    const g = guarded([{ name: 'rpm', metric: 'requests', limit: 1, per: 'minute' }]);
    const model = new AnthropicLikeModel(['ok'], undefined);

    const refused = await model
      .generate([[new HumanMessage('first')], [new HumanMessage('second')]], {
        callbacks: [g.handler],
        metadata: { sluice_entity: entity },
      })
      .catch((e: unknown) => e);

    expect(refused).toBeInstanceOf(SluiceRefusedError);
    expect(model.calls).toBe(0);
    const admitted = acquires(g).filter((e) => e.status === 200);
    expect(admitted).toHaveLength(1);
    await g.handler.settled();
    expect(g.releases()).toHaveLength(1); // the admitted lease, given back
  });
});
