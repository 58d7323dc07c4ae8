/**
 * `@sluice/client/estimate`: token estimates for an acquire, before the provider says.
 * A separate entry point because the tokenizer's vocabularies are large: the core SDK stays
 * small for callers that send their own estimates.
 *
 * - OpenAI-family models (gpt-*, o1/o3/o4, chatgpt-*): exact counts with `gpt-tokenizer`
 *   (o200k_base; cl100k_base for gpt-4 and gpt-3.5), including chat framing tokens.
 * - Any other model (Claude, Llama, Mistral, Gemini, …): ceil(characters / 3.5) + 4 per
 *   message + 3. English prose runs 3.5–4 characters per token in those tokenizers, so this
 *   leans high; code and non-Latin scripts can run higher, so leave headroom in limits or
 *   reconcile with `adjust`, which Sluice does anyway.
 */
import { countTokens as countO200k, encodeChat as encodeO200k } from 'gpt-tokenizer';
import {
  countTokens as countCl100k,
  encodeChat as encodeCl100k,
} from 'gpt-tokenizer/encoding/cl100k_base';
import type { Usage } from './types.js';

/** A chat message; `content` may be text or OpenAI-style parts (text parts are counted). */
export interface Message {
  readonly role: string;
  readonly content: string | readonly { readonly type: string; readonly text?: string }[] | null;
  readonly name?: string;
}

function text(content: Message['content']): string {
  if (content === null) return '';
  if (typeof content === 'string') return content;
  return content.map((part) => part.text ?? '').join('');
}

const OPENAI = /^(gpt-|o[134](-|$)|chatgpt-|text-embedding-|ft:gpt-)/;
const CL100K = /^(ft:)?gpt-(4(-|$)(?!o)|3\.5)/;

/**
 * Input tokens of a chat request for `model`.
 *
 * @example
 * const input = estimateTokens([{ role: 'user', content: 'Hello!' }], 'gpt-4o');
 */
export function estimateTokens(messages: readonly Message[], model: string): number {
  if (OPENAI.test(model)) {
    const chat = messages.map((m) => ({
      role: m.role as 'user',
      content: text(m.content),
      ...(m.name ? { name: m.name } : {}),
    }));
    // Chat framing is the same across each encoding's models: count with a representative one,
    // so model names newer than the tokenizer's list still count.
    return CL100K.test(model)
      ? encodeCl100k(chat, 'gpt-4').length
      : encodeO200k(chat, 'gpt-4o').length;
  }
  const characters = messages.reduce(
    (sum, m) => sum + text(m.content).length + (m.name?.length ?? 0),
    0,
  );
  return Math.ceil(characters / 3.5) + 4 * messages.length + 3;
}

/**
 * Tokens of plain text (no chat framing) for `model`: exact for OpenAI-family models, else
 * ceil(characters / 3.5). What the integrations count of a streamed answer cut short, which no
 * provider reported.
 *
 * @example
 * const output = estimateTextTokens('Hello, world', 'gpt-4o'); // 3
 */
export function estimateTextTokens(text: string, model: string): number {
  if (text === '') return 0;
  if (OPENAI.test(model)) return CL100K.test(model) ? countCl100k(text) : countO200k(text);
  return Math.ceil(text.length / 3.5);
}

/** An acquire estimate: the input tokens, plus the output the call may produce at most. */
export function estimateUsage(
  messages: readonly Message[],
  model: string,
  maxOutputTokens: number,
): Usage {
  return { input_tokens: estimateTokens(messages, model), output_tokens: maxOutputTokens };
}
