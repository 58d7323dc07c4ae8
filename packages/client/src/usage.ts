/**
 * Provider usage → Sluice usage, so settling a call is one line:
 *
 * @example
 * await sluice.release(lease.leaseId, fromOpenAI(completion.usage));
 *
 * In what they return, `input_tokens` counts every input token the model read: cache reads and
 * cache writes included, as providers count them against their token limits. Of those,
 * `cached_input_tokens` were read from the provider's prompt cache and `cache_write_tokens` were
 * written to it. `tokens` is left out: Sluice derives it as input + output.
 */
import type { Usage } from './types.js';

/** A count as providers send it: a non-negative integer, or nothing. */
type Count = number | null | undefined;

/** 0 for a count that is missing or not a non-negative integer. */
export const count = (value: Count): number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 0;

/** The usage of a provider that counts cache reads and writes outside its input tokens. */
const addedBack = (input: number, output: number, read: number, written: number): Usage =>
  usageOf(input + read + written, output, read, written);

/** The usage, without the cache fields that are 0. */
export function usageOf(
  input: number,
  output: number,
  cachedInput: number,
  cacheWrite: number,
): Usage {
  return {
    input_tokens: input,
    output_tokens: output,
    ...(cachedInput > 0 ? { cached_input_tokens: cachedInput } : {}),
    ...(cacheWrite > 0 ? { cache_write_tokens: cacheWrite } : {}),
  };
}

/**
 * OpenAI's `usage`, from Chat Completions (`prompt_tokens`, `completion_tokens`,
 * `prompt_tokens_details.cached_tokens`) or from the Responses API (`input_tokens`,
 * `output_tokens`, `input_tokens_details.cached_tokens`). OpenAI's input count already
 * includes the cached tokens.
 */
export interface OpenAIUsage {
  readonly prompt_tokens?: Count;
  readonly completion_tokens?: Count;
  readonly prompt_tokens_details?: { readonly cached_tokens?: Count } | null;
  readonly input_tokens?: Count;
  readonly output_tokens?: Count;
  readonly input_tokens_details?: { readonly cached_tokens?: Count } | null;
}

export function fromOpenAI(usage: OpenAIUsage | null | undefined): Usage {
  const u = usage ?? {};
  const input = count(u.prompt_tokens ?? u.input_tokens);
  const cached = count(
    u.prompt_tokens_details?.cached_tokens ?? u.input_tokens_details?.cached_tokens,
  );
  return usageOf(input, count(u.completion_tokens ?? u.output_tokens), Math.min(cached, input), 0);
}

/**
 * Anthropic's message `usage` (the final `message_delta` of a stream carries the totals).
 * Anthropic's `input_tokens` leaves out cache reads and cache writes; they are added back.
 */
export interface AnthropicUsage {
  readonly input_tokens?: Count;
  readonly output_tokens?: Count;
  readonly cache_read_input_tokens?: Count;
  readonly cache_creation_input_tokens?: Count;
}

export function fromAnthropic(usage: AnthropicUsage | null | undefined): Usage {
  const u = usage ?? {};
  return addedBack(
    count(u.input_tokens),
    count(u.output_tokens),
    count(u.cache_read_input_tokens),
    count(u.cache_creation_input_tokens),
  );
}

/**
 * Amazon Bedrock's Converse (and ConverseStream `metadata`) `usage`. Like Anthropic's,
 * `inputTokens` leaves out cache reads and writes; they are added back.
 */
export interface BedrockUsage {
  readonly inputTokens?: Count;
  readonly outputTokens?: Count;
  readonly cacheReadInputTokens?: Count;
  readonly cacheWriteInputTokens?: Count;
}

export function fromBedrock(usage: BedrockUsage | null | undefined): Usage {
  const u = usage ?? {};
  return addedBack(
    count(u.inputTokens),
    count(u.outputTokens),
    count(u.cacheReadInputTokens),
    count(u.cacheWriteInputTokens),
  );
}
