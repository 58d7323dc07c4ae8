/**
 * `@sluice/client/langchain`: a LangChain.js (`@langchain/core` 1.x) callback handler that guards
 * every chat model and LLM run it hears of (pass it in the model's `callbacks`, or in a call's
 * config: it follows the call into chains, agents, `bindTools` and `withStructuredOutput`).
 *
 * - **Model start:** acquires, with input tokens estimated from the messages (and the tools'
 *   definitions) by `estimateTokens` and output from the call's `ls_max_tokens` / `max_tokens`
 *   (else `defaultMaxOutputTokens`). A refusal throws {@link SluiceRefusedError}. The handler is
 *   built with `raiseError: true`, so LangChain awaits it before the model is called and throws
 *   its error to the caller: a refused model is never called. (LangChain also logs each error a
 *   handler raises, with `console.error`.)
 * - **Model end:** released with the usage the model reported (the messages' `usage_metadata`,
 *   else `llmOutput.tokenUsage`); a model that reports none is charged its input as estimated and
 *   its output counted from its text.
 * - **Model error**, or the call's `signal` aborted: released with the usage reported so far
 *   by streamed chunks, else the input as estimated and the output counted from the tokens the
 *   model reported to its callbacks (a model reports a chunk after handing it on, so the one in
 *   the reader's hand at an abort is not counted); nothing streamed: the reservation is given
 *   back.
 * - Once per run id, whatever repeats. A settle that fails never fails the call
 *   (`onSettleError`).
 * - **Fallbacks** cannot switch the model a callback runs under: when Sluice admits a fallback
 *   (a plan's `fallbacks`), the lease is given back and the call throws. Compose models with
 *   LangChain's `withFallbacks` instead: a refusal is an error, so the next model (its own
 *   resource) is tried.
 * - Not seen by any callback: a stream its reader stops reading without aborting. Its lease keeps
 *   its estimate; pass an `AbortSignal` and abort it instead.
 */
import { BaseCallbackHandler } from '@langchain/core/callbacks/base';
import type { Serialized } from '@langchain/core/load/serializable';
import type { BaseMessage, UsageMetadata } from '@langchain/core/messages';
import type { LLMResult } from '@langchain/core/outputs';
import { SluiceClientError } from './errors.js';
import { estimateTextTokens, estimateTokens, type Message } from './estimate.js';
import {
  admit,
  type GuardedCall,
  type GuardSettings,
  refusalOf,
  Settlements,
  SluiceRefusedError,
} from './guard.js';
import { reportedOf, reportedUsage, settledUsage, sum } from './langchain-usage.js';
import type { AcquireRequest } from './types.js';

export { fromLangChain } from './langchain-usage.js';
export { type GuardSettings, refusalOf, SluiceRefusedError };

/** One model run, as the options' functions see it. */
export interface SluiceRun {
  /** The model, serialized (`id` ends with its class name). */
  readonly llm: Serialized;
  /** The chat messages, or for an LLM each prompt as a user message. */
  readonly messages: readonly Message[];
  /** The run's metadata: the call's `metadata`, and LangChain's `ls_model_name`, `ls_provider`, … */
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly tags: readonly string[];
  /** The model's invocation parameters (`model`, `max_tokens`, `tools`, …). */
  readonly invocationParams: Readonly<Record<string, unknown>>;
}

export interface SluiceCallbackOptions extends GuardSettings {
  /** Who calls. @default the call's `metadata.sluice_entity` (a string), else the call throws */
  readonly entity?: (run: SluiceRun) => string | undefined;
  /**
   * The resource to acquire for. @default `ls_model_name`, else the invocation's `model` or
   * `modelName`, else the model's class name
   */
  readonly resource?: (run: SluiceRun) => string;
  /** More of the acquire: inline `limits`, `priority`, `maxWaitMs`, `batch`. */
  readonly request?: (
    run: SluiceRun,
  ) => Partial<Omit<AcquireRequest, 'entity' | 'resource' | 'usage' | 'fallback'>>;
  /** The output estimate of a call that states no maximum. @default 1_000 */
  readonly defaultMaxOutputTokens?: number;
}

/** A run in flight: its lease and what it has streamed. */
interface Run {
  readonly guarded: GuardedCall;
  readonly model: string;
  output: string;
  streamed: boolean;
  reported: UsageMetadata | undefined;
  /** Stops listening to the call's abort signal. */
  detach: () => void;
}

const text = (content: unknown): Message['content'] =>
  typeof content === 'string' ? content : Array.isArray(content) ? (content as never) : null;

function messagesOf(messages: readonly BaseMessage[], params: Record<string, unknown>): Message[] {
  const counted: Message[] = messages.map((m) => ({ role: m.type, content: text(m.content) }));
  for (const m of messages) {
    const calls = (m as { tool_calls?: unknown[] }).tool_calls;
    if (calls?.length) counted.push({ role: 'assistant', content: JSON.stringify(calls) });
  }
  if (Array.isArray(params.tools) && params.tools.length > 0)
    counted.push({ role: 'system', content: JSON.stringify(params.tools) });
  return counted;
}

const stringOf = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;
const numberOf = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;

/**
 * The handler. One instance may serve every call of a process: runs are kept by run id.
 *
 * @example
 * import { ChatOpenAI } from '@langchain/openai';
 * import { SluiceClient } from '@sluice/client';
 * import { SluiceCallbackHandler } from '@sluice/client/langchain';
 *
 * const sluice = new SluiceCallbackHandler({ client: new SluiceClient({ endpoint: process.env.SLUICE_URL! }) });
 * const model = new ChatOpenAI({ model: 'gpt-4o', callbacks: [sluice] });
 * await model.invoke('Hello', { metadata: { sluice_entity: userId } });
 */
export class SluiceCallbackHandler extends BaseCallbackHandler {
  name = 'SluiceCallbackHandler';
  readonly #options: SluiceCallbackOptions;
  readonly #runs = new Map<string, Run>();
  readonly #settlements = new Settlements();
  /**
   * The runs of one call, by the options object LangChain hands each of them: a `generate` of
   * several prompts starts a run per prompt at once, and when one is refused LangChain ends none
   * of the others (their model is never called), so they are given back here.
   */
  readonly #calls = new WeakMap<object, { refused: boolean; runs: Set<string> }>();

  constructor(options: SluiceCallbackOptions) {
    super({ raiseError: true }); // awaited, and its refusal thrown to the caller
    this.#options = options;
  }

  /** The same handler: its runs in flight are its state. */
  override copy(): this {
    return this;
  }

  override async handleChatModelStart(
    llm: Serialized,
    messages: BaseMessage[][],
    runId: string,
    _parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): Promise<void> {
    const params = (extraParams?.invocation_params ?? {}) as Record<string, unknown>;
    const counted = messagesOf(messages.flat(), params);
    await this.#start(runId, extraParams, {
      llm,
      messages: counted,
      metadata: metadata ?? {},
      tags: tags ?? [],
      invocationParams: params,
    });
  }

  override async handleLLMStart(
    llm: Serialized,
    prompts: string[],
    runId: string,
    _parentRunId?: string,
    extraParams?: Record<string, unknown>,
    tags?: string[],
    metadata?: Record<string, unknown>,
  ): Promise<void> {
    const params = (extraParams?.invocation_params ?? {}) as Record<string, unknown>;
    const counted = prompts.map((p) => ({ role: 'user', content: p }));
    await this.#start(runId, extraParams, {
      llm,
      messages: counted,
      metadata: metadata ?? {},
      tags: tags ?? [],
      invocationParams: params,
    });
  }

  override async handleLLMNewToken(
    token: string,
    _idx: unknown,
    runId: string,
    _parentRunId?: string,
    _tags?: string[],
    fields?: { chunk?: unknown },
  ): Promise<void> {
    const run = this.#runs.get(runId);
    if (!run) return;
    run.output += token;
    run.streamed ||= token !== '';
    const usage = (fields?.chunk as { message?: { usage_metadata?: UsageMetadata } } | undefined)
      ?.message?.usage_metadata;
    if (usage) run.reported = run.reported ? sum(run.reported, usage) : usage;
  }

  override async handleLLMEnd(output: LLMResult, runId: string): Promise<void> {
    const run = this.#take(runId);
    if (!run) return;
    const answered = output.generations
      .flat()
      .map((g) => g.text)
      .join('');
    const counted = estimateTextTokens(answered, run.model);
    const usage = settledUsage(reportedUsage(output), run.guarded.request.usage, counted);
    await run.guarded.settle(usage);
  }

  override async handleLLMError(_error: unknown, runId: string): Promise<void> {
    const run = this.#take(runId);
    if (!run) return;
    // Nothing streamed nor reported: nothing was used, the reservation is given back.
    if (!run.streamed && !run.reported) return run.guarded.settle();
    const counted = estimateTextTokens(run.output, run.model);
    const reported = reportedOf(run.reported);
    await run.guarded.settle(settledUsage(reported, run.guarded.request.usage, counted, true));
  }

  /** Resolves when every settle sent so far has been answered (await it before a Lambda returns). */
  settled(): Promise<void> {
    return this.#settlements.idle();
  }

  /** The run, taken out: a second end or error of the same run finds nothing to settle. */
  #take(runId: string): Run | undefined {
    const run = this.#runs.get(runId);
    this.#runs.delete(runId);
    run?.detach();
    return run;
  }

  /** Admits a run, or throws; {@link SluiceCallbackHandler.settled} waits for it too. */
  #start(runId: string, call: object | undefined, run: SluiceRun): Promise<void> {
    const started = this.#started(runId, call, run);
    this.#settlements.track(started.then(ignore, ignore));
    return started;
  }

  /** Admits a run, or throws; a run refused gives back the runs of its call admitted here. */
  async #started(runId: string, call: object | undefined, run: SluiceRun): Promise<void> {
    if (this.#runs.has(runId)) return;
    const calls = call ? this.#callOf(call) : undefined;
    let admitted: Run;
    try {
      admitted = await this.#admit(run, signalOf(call));
      if (calls?.refused) {
        // Another prompt of the call was refused: this model is not called either.
        await admitted.guarded.settle();
        throw new SluiceClientError('call_refused', 'another prompt of this call was refused');
      }
    } catch (error) {
      if (calls && !calls.refused) {
        calls.refused = true;
        for (const other of calls.runs) void this.#take(other)?.guarded.settle();
      }
      throw error;
    }
    calls?.runs.add(runId);
    this.#runs.set(runId, admitted);
    // An abort may leave the model's generator suspended, never to reach handleLLMError.
    const signal = signalOf(call);
    const onAbort = () => void this.handleLLMError(signal?.reason, runId);
    signal?.addEventListener('abort', onAbort, { once: true });
    admitted.detach = () => signal?.removeEventListener('abort', onAbort);
  }

  #callOf(call: object): { refused: boolean; runs: Set<string> } {
    const known = this.#calls.get(call);
    if (known) return known;
    const started = { refused: false, runs: new Set<string>() };
    this.#calls.set(call, started);
    return started;
  }

  /** Acquires for a run, with its estimate; a fallback admitted is given back (see above). */
  async #admit(run: SluiceRun, signal: AbortSignal | undefined): Promise<Run> {
    const options = this.#options;
    const resource = options.resource?.(run) ?? defaultResource(run);
    const entity = options.entity?.(run) ?? stringOf(run.metadata.sluice_entity);
    if (!entity)
      throw new SluiceClientError(
        'entity_missing',
        'SluiceCallbackHandler: no entity for this run (set `entity`, or metadata.sluice_entity)',
      );
    const model = stringOf(run.metadata.ls_model_name) ?? resource;
    const output =
      numberOf(run.metadata.ls_max_tokens) ??
      numberOf(run.invocationParams.max_tokens) ??
      numberOf(run.invocationParams.maxTokens) ??
      options.defaultMaxOutputTokens ??
      1_000;
    const request = {
      ...options.request?.(run),
      entity,
      resource,
      usage: { input_tokens: estimateTokens(run.messages, model), output_tokens: output },
    };
    const guarded = await admit(options, this.#settlements, request, signal);
    if (guarded.admission.resource !== resource) {
      await guarded.settle();
      throw new SluiceClientError(
        'fallback_not_callable',
        `Sluice admitted the fallback ${guarded.admission.resource} for ${resource}; a callback cannot switch models (use withFallbacks)`,
      );
    }
    const detach = () => {};
    return { guarded, model, output: '', streamed: false, reported: undefined, detach };
  }
}

const ignore = () => {};

/** The call's abort signal, which LangChain passes with the call's options. */
function signalOf(extraParams: object | undefined): AbortSignal | undefined {
  const signal = (extraParams as { options?: { signal?: unknown } } | undefined)?.options?.signal;
  return signal instanceof AbortSignal ? signal : undefined;
}

function defaultResource(run: SluiceRun): string {
  return (
    stringOf(run.metadata.ls_model_name) ??
    stringOf(run.invocationParams.model) ??
    stringOf(run.invocationParams.modelName) ??
    stringOf(run.llm.id.at(-1)) ??
    'unknown'
  );
}
