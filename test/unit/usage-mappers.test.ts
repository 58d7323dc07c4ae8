/** Provider usage objects, as the providers document them, mapped to Sluice usage. */
import { fromAnthropic, fromBedrock, fromOpenAI } from '@sluice/client';
import { describe, expect, it } from 'vitest';

describe('fromOpenAI', () => {
  it('maps Chat Completions usage; cached tokens are part of the prompt tokens', () => {
    const usage = {
      prompt_tokens: 2_006,
      completion_tokens: 300,
      total_tokens: 2_306,
      prompt_tokens_details: { cached_tokens: 1_920, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0 },
    };
    expect(fromOpenAI(usage)).toEqual({
      input_tokens: 2_006,
      output_tokens: 300,
      cached_input_tokens: 1_920,
    });
  });

  it('maps Responses API usage, and leaves out a cache field that is 0', () => {
    const usage = {
      input_tokens: 36,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 87,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 123,
    };
    expect(fromOpenAI(usage)).toEqual({ input_tokens: 36, output_tokens: 87 });
  });
});

describe('fromAnthropic', () => {
  it('adds cache reads and writes back into the input tokens', () => {
    const usage = {
      input_tokens: 50,
      cache_creation_input_tokens: 248,
      cache_read_input_tokens: 1_800,
      output_tokens: 503,
    };
    expect(fromAnthropic(usage)).toEqual({
      input_tokens: 2_098,
      output_tokens: 503,
      cached_input_tokens: 1_800,
      cache_write_tokens: 248,
    });
  });

  it('reads nulls (as streams send them) as 0', () => {
    expect(
      fromAnthropic({ input_tokens: 12, output_tokens: 0, cache_read_input_tokens: null }),
    ).toEqual({ input_tokens: 12, output_tokens: 0 });
  });
});

describe('fromBedrock', () => {
  it('maps Converse usage, cache reads and writes added to the input tokens', () => {
    const usage = {
      inputTokens: 20,
      outputTokens: 40,
      totalTokens: 1_060,
      cacheReadInputTokens: 1_000,
    };
    expect(fromBedrock(usage)).toEqual({
      input_tokens: 1_020,
      output_tokens: 40,
      cached_input_tokens: 1_000,
    });
  });
});

describe('every mapper', () => {
  it('turns missing, negative or non-integer counts into 0 rather than a usage Sluice refuses', () => {
    const bad = { input_tokens: -3, output_tokens: 1.5 } as never;
    expect(fromOpenAI(undefined)).toEqual({ input_tokens: 0, output_tokens: 0 });
    expect(fromAnthropic(bad)).toEqual({ input_tokens: 0, output_tokens: 0 });
    expect(fromBedrock(null)).toEqual({ input_tokens: 0, output_tokens: 0 });
  });
});
