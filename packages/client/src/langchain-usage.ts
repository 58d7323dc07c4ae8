/**
 * What LangChain.js reports of a model run's usage (`usage_metadata`, `llmOutput.tokenUsage`),
 * read as Sluice usage: counts left out, or that are not counts, are told apart from counts of 0.
 */
import type { UsageMetadata } from '@langchain/core/messages';
import type { LLMResult } from '@langchain/core/outputs';
import type { ChainValues } from '@langchain/core/utils/types';
import { isCount } from './guard.js';
import type { Usage } from './types.js';
import { count, usageOf } from './usage.js';

/** LangChain's `usage_metadata` → Sluice usage: input counts cache reads and writes, as it does. */
export function fromLangChain(usage: Partial<UsageMetadata> | null | undefined): Usage {
  const details = usage?.input_token_details;
  return usageOf(
    count(usage?.input_tokens),
    count(usage?.output_tokens),
    count(details?.cache_read),
    count(details?.cache_creation),
  );
}

/** What a run reported of its usage: each count undefined that it did not report (or not as one). */
export interface Reported {
  readonly input?: number;
  readonly output?: number;
  readonly cachedInput: number;
  readonly cacheWrite: number;
}

export const reportedOf = (usage: Partial<UsageMetadata> | undefined): Reported => ({
  ...(isCount(usage?.input_tokens) ? { input: usage.input_tokens } : {}),
  ...(isCount(usage?.output_tokens) ? { output: usage.output_tokens } : {}),
  cachedInput: count(usage?.input_token_details?.cache_read),
  cacheWrite: count(usage?.input_token_details?.cache_creation),
});

/** The usage a finished run reported: its generations' `usage_metadata`, else `tokenUsage`. */
export function reportedUsage(output: LLMResult): Reported {
  const messages = output.generations
    .flat()
    .map((g) => (g as { message?: { usage_metadata?: UsageMetadata } }).message?.usage_metadata)
    .filter((u): u is UsageMetadata => u !== undefined);
  if (messages.length > 0) return reportedOf(messages.reduce(sum));
  const tokenUsage = (output.llmOutput as ChainValues | undefined)?.tokenUsage as
    | { promptTokens?: unknown; completionTokens?: unknown }
    | undefined;
  return reportedOf({
    input_tokens: tokenUsage?.promptTokens as number,
    output_tokens: tokenUsage?.completionTokens as number,
  });
}

/**
 * The usage to settle: what was reported, where a count left out is the input as estimated, and
 * the output counted from the answer (`counted`); `atLeast` the output is never below it (a
 * stream cut short reported its output only as it began).
 */
export function settledUsage(
  reported: Reported,
  estimate: Usage,
  counted: number,
  atLeast = false,
): Usage {
  const output =
    reported.output === undefined
      ? counted
      : atLeast
        ? Math.max(reported.output, counted)
        : reported.output;
  return usageOf(
    reported.input ?? estimate.input_tokens ?? 0,
    output,
    reported.cachedInput,
    reported.cacheWrite,
  );
}

/** Two usages added, as LangChain adds a stream's chunks. */
export function sum(a: UsageMetadata, b: UsageMetadata): UsageMetadata {
  const details = (x: UsageMetadata) => x.input_token_details ?? {};
  return {
    input_tokens: count(a.input_tokens) + count(b.input_tokens),
    output_tokens: count(a.output_tokens) + count(b.output_tokens),
    total_tokens: count(a.total_tokens) + count(b.total_tokens),
    input_token_details: {
      cache_read: count(details(a).cache_read) + count(details(b).cache_read),
      cache_creation: count(details(a).cache_creation) + count(details(b).cache_creation),
    },
  };
}
