import { estimateTextTokens, estimateTokens, estimateUsage } from '@sluice/client/estimate';
import { encode, encodeChat } from 'gpt-tokenizer';
import { encode as encodeCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { describe, expect, it } from 'vitest';

const chat = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Summarize the GCRA algorithm in one sentence.' },
];

describe('estimateTokens', () => {
  it('counts OpenAI-family chats exactly with the model’s tokenizer', () => {
    const expected = encodeChat(
      chat.map((m) => ({ role: m.role as 'user', content: m.content })),
      'gpt-4o',
    ).length;
    expect(estimateTokens(chat, 'gpt-4o')).toBe(expected);
    expect(estimateTokens(chat, 'gpt-4o-2099-01-01')).toBe(expected); // newer than the tokenizer's list
    expect(expected).toBeGreaterThan(10);
  });

  it('counts the text parts of multimodal content', () => {
    const parts = [
      { role: 'user', content: [{ type: 'text', text: 'Hello there' }, { type: 'image_url' }] },
    ];
    expect(estimateTokens(parts, 'gpt-4o')).toBe(
      estimateTokens([{ role: 'user', content: 'Hello there' }], 'gpt-4o'),
    );
  });

  it('falls back to characters / 3.5 plus framing for other models', () => {
    const characters = chat.reduce((sum, m) => sum + m.content.length, 0);
    expect(estimateTokens(chat, 'claude-sonnet-4')).toBe(Math.ceil(characters / 3.5) + 4 * 2 + 3);
  });

  it('builds an acquire estimate with the output cap', () => {
    expect(estimateUsage(chat, 'claude-sonnet-4', 512)).toMatchObject({ output_tokens: 512 });
  });

  it('counts plain text without chat framing: exact for OpenAI models, else characters / 3.5', () => {
    const text = 'Once upon a time, in a land far away';
    expect(estimateTextTokens(text, 'gpt-4o')).toBe(encode(text).length);
    expect(estimateTextTokens(text, 'gpt-4-turbo')).toBe(encodeCl100k(text).length);
    expect(estimateTextTokens(text, 'claude-sonnet-4')).toBe(Math.ceil(text.length / 3.5));
    expect(estimateTextTokens('', 'gpt-4o')).toBe(0);
  });
});
