/**
 * `@sluice/client/ai-sdk`: a language model middleware for the Vercel AI SDK (`ai` 7), for
 * `wrapLanguageModel`. Each model call (each step of generateText or streamText, an object's
 * generation) acquires before it is made and settles after it:
 *
 * - **Before:** input tokens estimated from the prompt (and the tools' definitions) with
 *   `estimateTokens`, output from the call's `maxOutputTokens` (else `defaultMaxOutputTokens`).
 *   A refusal throws {@link SluiceRefusedError} and the model is not called.
 * - **After a generate:** released with the usage the provider reported (a count it left out:
 *   the input as estimated, the output counted from its answer); a generate that throws gives the
 *   reservation back.
 * - **A stream:** released with the usage of its `finish` part (completed as a generate's is). Cut short (aborted, failed,
 *   cancelled by its reader, or ended without a `finish`): released with the input as estimated
 *   and the output counted from the deltas it streamed (`estimateTextTokens`); nothing streamed
 *   yet: the reservation is given back. Whatever happens, and in whatever order, once.
 * - **Fallbacks:** when Sluice admits a fallback (the request's `fallback` or the plan's), the
 *   model `models(resource)` answers is called in place of the wrapped one; without one, the
 *   lease is given back and the call throws (the model asked for was not admitted). Which
 *   resource was admitted is in the result's `providerMetadata.sluice`.
 *
 * Nothing of `ai` is loaded at run time: it is an optional peer dependency, for the types.
 */
import type { LanguageModelMiddleware } from 'ai';
import { SluiceClientError } from './errors.js';
import { estimateTextTokens, estimateTokens, type Message } from './estimate.js';
import {
  admit,
  type GuardedCall,
  type GuardSettings,
  isCount,
  refusalOf,
  Settlements,
  SluiceRefusedError,
  usedSoFar,
} from './guard.js';
import type { AcquireRequest, Usage } from './types.js';
import { count, usageOf } from './usage.js';

export { type GuardSettings, refusalOf, SluiceRefusedError };

type WrapOptions = Parameters<NonNullable<LanguageModelMiddleware['wrapStream']>>[0];
/** A provider's language model, as the middleware is handed it (`LanguageModelV4`). */
export type SluiceLanguageModel = WrapOptions['model'];
/** A model call's options, as the middleware is handed them (`LanguageModelV4CallOptions`). */
export type SluiceCallOptions = WrapOptions['params'];
type StreamResult = Awaited<ReturnType<WrapOptions['doStream']>>;
type GenerateResult = Awaited<ReturnType<WrapOptions['doGenerate']>>;
type StreamPart = StreamResult['stream'] extends ReadableStream<infer P> ? P : never;
type ProviderMetadata = NonNullable<GenerateResult['providerMetadata']>;

/** One model call, as the options' functions see it. */
export interface SluiceModelCall {
  readonly type: 'generate' | 'stream';
  readonly params: SluiceCallOptions;
  /** The wrapped model; its `modelId` is the default resource. */
  readonly model: SluiceLanguageModel;
}

export interface SluiceMiddlewareOptions extends GuardSettings {
  /**
   * Who calls. @default `providerOptions.sluice.entity` of the call (a string), else the call
   * throws
   */
  readonly entity?: (call: SluiceModelCall) => string | undefined;
  /** The resource to acquire for. @default the wrapped model's `modelId` */
  readonly resource?: (call: SluiceModelCall) => string;
  /** More of the acquire: inline `limits`, `priority`, `maxWaitMs`, `fallback`, `batch`. */
  readonly request?: (
    call: SluiceModelCall,
  ) => Partial<Omit<AcquireRequest, 'entity' | 'resource' | 'usage'>>;
  /** The output estimate of a call that sets no `maxOutputTokens`. @default 1_000 */
  readonly defaultMaxOutputTokens?: number;
  /**
   * The model to call for an admitted fallback resource (not wrapped with this middleware).
   * @default none: a fallback admitted throws
   */
  readonly models?: (resource: string) => SluiceLanguageModel | undefined;
}

/** The middleware, and a way to wait for what it has still to settle. */
export interface SluiceMiddleware extends LanguageModelMiddleware {
  /**
   * Resolves when every settle sent so far has been answered: a stream aborted or cut short
   * settles as it ends, possibly after the caller has its answer. Await it before a Lambda
   * handler returns (the process may be frozen after), or before a process exits.
   */
  settled(): Promise<void>;
}

/** What `providerMetadata.sluice` of a guarded call's result says. */
export interface SluiceCallMetadata {
  /** The resource admitted: the one asked for, or the fallback called. */
  readonly resource: string;
  readonly fellBack: boolean;
  /** True when Sluice was unreachable and the client let the call through. */
  readonly degraded: boolean;
  [key: string]: string | boolean;
}

/**
 * The AI SDK's usage → Sluice usage: a provider's (`inputTokens.total`, `.cacheRead`,
 * `.cacheWrite`, `outputTokens.total`) or a result's (`inputTokens`, `outputTokens`,
 * `inputTokenDetails.cacheReadTokens`/`cacheWriteTokens`, `cachedInputTokens`). Input counts
 * cache reads and writes, as the AI SDK's totals do.
 */
export function fromAISDK(usage: AISDKUsage | null | undefined): Usage {
  const input = usage?.inputTokens;
  const output = usage?.outputTokens;
  if (typeof input === 'object' && input !== null) {
    const parts = count(input.noCache) + count(input.cacheRead) + count(input.cacheWrite);
    const total = isCount(input.total) ? input.total : parts;
    return usageOf(total, outputOf(output), count(input.cacheRead), count(input.cacheWrite));
  }
  const flat = usage as FlatUsage | null | undefined;
  const details = flat?.inputTokenDetails;
  return usageOf(
    count(input),
    outputOf(output),
    count(details?.cacheReadTokens ?? flat?.cachedInputTokens),
    count(details?.cacheWriteTokens),
  );
}

type Count = number | null | undefined;
interface FlatUsage {
  readonly inputTokens?: Count;
  readonly outputTokens?: Count;
  readonly cachedInputTokens?: Count;
  readonly inputTokenDetails?: {
    readonly cacheReadTokens?: Count;
    readonly cacheWriteTokens?: Count;
  };
}
interface NestedUsage {
  readonly inputTokens?: {
    readonly total?: Count;
    readonly noCache?: Count;
    readonly cacheRead?: Count;
    readonly cacheWrite?: Count;
  };
  readonly outputTokens?: {
    readonly total?: Count;
    readonly text?: Count;
    readonly reasoning?: Count;
  };
}
/** A provider's usage (`LanguageModelV4Usage`) or a result's (`LanguageModelUsage`). */
export type AISDKUsage = FlatUsage | NestedUsage;

function outputOf(output: AISDKUsage['outputTokens']): number {
  if (typeof output !== 'object' || output === null) return count(output);
  return isCount(output.total) ? output.total : count(output.text) + count(output.reasoning);
}

/**
 * Whether the provider reported a count of this kind: a whole number, or (a provider's nested
 * usage) its total or its main part (`noCache` input, `text` output). NaN, a negative or a
 * fractional count is none, and the count is then estimated; cache or reasoning parts alone do
 * not make a count.
 */
function reported(value: unknown, main: 'noCache' | 'text'): boolean {
  if (isCount(value)) return true;
  if (typeof value !== 'object' || value === null) return false;
  const parts = value as Record<string, unknown>;
  return isCount(parts.total) || isCount(parts[main]);
}

/**
 * The usage to settle: the provider's, where a count it left out (a provider may report none,
 * in a stream especially) is the input as estimated or the output counted from what it answered,
 * never a 0 that would leave the call uncharged.
 */
function settledUsage(
  usage: AISDKUsage | null | undefined,
  estimate: Usage,
  answered: () => number,
): Usage {
  return {
    ...fromAISDK(usage),
    ...(reported(usage?.inputTokens, 'noCache')
      ? {}
      : { input_tokens: estimate.input_tokens ?? 0 }),
    ...(reported(usage?.outputTokens, 'text') ? {} : { output_tokens: answered() }),
  };
}

/** The prompt as chat messages to count: text, reasoning, tool calls' input and results. */
function messagesOf(params: SluiceCallOptions): Message[] {
  const messages: Message[] = params.prompt.map((m) => ({
    role: m.role,
    content:
      typeof m.content === 'string'
        ? m.content
        : m.content.map((part) => ({ type: 'text', text: partText(part) })),
  }));
  if (params.tools?.length)
    messages.push({ role: 'system', content: JSON.stringify(params.tools) });
  return messages;
}

function partText(part: object): string {
  if ('text' in part && typeof part.text === 'string') return part.text;
  if ('input' in part)
    return typeof part.input === 'string' ? part.input : JSON.stringify(part.input);
  if ('output' in part) return JSON.stringify(part.output);
  return '';
}

function entityOf(call: SluiceModelCall, options: SluiceMiddlewareOptions): string {
  const given = options.entity?.(call) ?? call.params.providerOptions?.sluice?.entity;
  if (typeof given === 'string' && given !== '') return given;
  throw new SluiceClientError(
    'entity_missing',
    'sluiceMiddleware: no entity for this call (set `entity`, or providerOptions.sluice.entity)',
  );
}

/** Acquires for the call; the model to call instead of the wrapped one when a fallback was admitted. */
async function admitCall(
  call: SluiceModelCall,
  options: SluiceMiddlewareOptions,
  settlements: Settlements,
): Promise<{ guarded: GuardedCall; fallback: SluiceLanguageModel | undefined }> {
  const resource = options.resource?.(call) ?? call.model.modelId;
  const messages = messagesOf(call.params);
  const output = call.params.maxOutputTokens ?? options.defaultMaxOutputTokens ?? 1_000;
  const request = {
    ...options.request?.(call),
    entity: entityOf(call, options),
    resource,
    usage: { input_tokens: estimateTokens(messages, call.model.modelId), output_tokens: output },
  };
  const guarded = await admit(options, settlements, request, call.params.abortSignal);
  if (guarded.admission.resource === resource) return { guarded, fallback: undefined };
  let fallback: SluiceLanguageModel | undefined;
  try {
    fallback = options.models?.(guarded.admission.resource);
  } catch (error) {
    await guarded.settle(); // no model for it: the call does not go ahead
    throw error;
  }
  if (fallback) return { guarded, fallback };
  await guarded.settle();
  throw new SluiceClientError(
    'fallback_not_callable',
    `Sluice admitted the fallback ${guarded.admission.resource} for ${resource}, and \`models\` gives no model for it`,
  );
}

function withMetadata(metadata: ProviderMetadata | undefined, guarded: GuardedCall) {
  const sluice: SluiceCallMetadata = {
    resource: guarded.admission.resource,
    fellBack: guarded.admission.fellBack,
    degraded: guarded.admission.degraded,
  };
  return { ...metadata, sluice };
}

/** What a stream part adds to the output streamed so far. */
function streamedText(part: StreamPart): string | undefined {
  switch (part.type) {
    case 'text-delta':
    case 'reasoning-delta':
    case 'tool-input-delta':
      return part.delta;
    case 'tool-call':
      return part.input;
    default:
      return undefined;
  }
}

/**
 * The provider's stream, passed on part by part, settling the lease once: at the `finish` part
 * with its usage, or, when the stream is cut short, with what it used so far. The stream closes
 * (or fails) only after the settle, so a caller that read it to the end finds the usage recorded.
 */
function metered(
  source: ReadableStream<StreamPart>,
  guarded: GuardedCall,
  model: string,
  signal: AbortSignal | undefined,
): ReadableStream<StreamPart> {
  const reader = source.getReader();
  let output = '';
  let streamed = false;
  const cutShort = () =>
    guarded.settle(usedSoFar(guarded.request.usage, streamed, estimateTextTokens(output, model)));
  const onAbort = () => void cutShort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const detach = () => signal?.removeEventListener('abort', onAbort);
  return new ReadableStream<StreamPart>({
    async pull(controller) {
      let next: ReadableStreamReadResult<StreamPart>;
      try {
        next = await reader.read();
      } catch (error) {
        await cutShort();
        detach();
        controller.error(error);
        return;
      }
      if (next.done) {
        await cutShort(); // after a finish part: that settle, awaited
        detach();
        controller.close();
        return;
      }
      const part = next.value;
      if (part.type === 'finish') {
        const answered = () => estimateTextTokens(output, model);
        void guarded.settle(settledUsage(part.usage, guarded.request.usage, answered));
        controller.enqueue({
          ...part,
          providerMetadata: withMetadata(part.providerMetadata, guarded),
        });
        return;
      }
      const text = streamedText(part);
      if (text !== undefined) {
        streamed = true;
        output += text;
      }
      controller.enqueue(part);
    },
    async cancel(reason) {
      await cutShort();
      detach();
      await reader.cancel(reason);
    },
  });
}

/**
 * The middleware.
 *
 * @example
 * import { wrapLanguageModel, streamText } from 'ai';
 * import { openai } from '@ai-sdk/openai';
 * import { SluiceClient } from '@sluice/client';
 * import { sluiceMiddleware, SluiceRefusedError } from '@sluice/client/ai-sdk';
 *
 * const sluice = new SluiceClient({ endpoint: process.env.SLUICE_URL! });
 * const model = wrapLanguageModel({
 *   model: openai('gpt-4o'),
 *   middleware: sluiceMiddleware({ client: sluice, models: (id) => openai(id) }),
 * });
 * const { text } = await generateText({ model, prompt, providerOptions: { sluice: { entity: userId } } });
 */
export function sluiceMiddleware(options: SluiceMiddlewareOptions): SluiceMiddleware {
  const settlements = new Settlements();
  return {
    specificationVersion: 'v4',
    settled: () => settlements.idle(),
    wrapGenerate: async ({ doGenerate, params, model }) => {
      const call = { type: 'generate' as const, params, model };
      const { guarded, fallback } = await admitCall(call, options, settlements);
      let result: GenerateResult;
      try {
        result = fallback ? await fallback.doGenerate(params) : await doGenerate();
      } catch (error) {
        await guarded.settle(); // nothing came back: the reservation is given back
        throw error;
      }
      const answered = () =>
        estimateTextTokens(
          result.content.map(partText).join(''),
          fallback?.modelId ?? model.modelId,
        );
      await guarded.settle(settledUsage(result.usage, guarded.request.usage, answered));
      return { ...result, providerMetadata: withMetadata(result.providerMetadata, guarded) };
    },
    wrapStream: async ({ doStream, params, model }) => {
      const call = { type: 'stream' as const, params, model };
      const { guarded, fallback } = await admitCall(call, options, settlements);
      let result: StreamResult;
      try {
        result = fallback ? await fallback.doStream(params) : await doStream();
      } catch (error) {
        await guarded.settle();
        throw error;
      }
      const counted = fallback?.modelId ?? model.modelId;
      return { ...result, stream: metered(result.stream, guarded, counted, params.abortSignal) };
    },
  };
}
