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

/**
 * The text of a message's content. What a caller's messages hold is not always what the type
 * says (an assistant message with tool calls has no `content`; a part may be anything): what
 * holds no text counts nothing, and never throws.
 */
function text(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) =>
      typeof part === 'object' &&
      part !== null &&
      typeof (part as { text?: unknown }).text === 'string'
        ? (part as { text: string }).text
        : '',
    )
    .join('');
}

const OPENAI = /^(gpt-|o[134](-|$)|chatgpt-|text-embedding-|ft:gpt-)/;
const CL100K = /^(ft:)?gpt-(4(-|$)(?!o)|3\.5)/;

/**
 * Special tokens' text (`<|endoftext|>`) in what a user wrote is ordinary text to the provider,
 * and is counted as such (the tokenizer's default throws on it).
 */
const AS_TEXT = { disallowedSpecial: new Set<string>() };

/**
 * The longest piece counted at once. BPE merges of one run without a break (CJK text has no
 * spaces) take time quadratic in its length: 50,000 characters took seconds. Longer text is cut
 * before a space that starts a word, where the tokenizer splits anyway (exact); a run with no
 * such place is cut where it must (an estimate off by a token or so a cut).
 */
const PIECE = 1_000;

/** `text` in pieces of at most {@link PIECE} characters (see there). */
function pieces(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  while (text.length - start > PIECE) {
    let cut = start + PIECE;
    while (cut > start + PIECE / 2 && !wordStart(text, cut)) cut--;
    if (cut === start + PIECE / 2) {
      cut = start + PIECE;
      if (/[\uDC00-\uDFFF]/.test(text[cut] ?? '')) cut--; // not inside a surrogate pair
    }
    out.push(text.slice(start, cut));
    start = cut;
  }
  out.push(text.slice(start));
  return out;
}

/** A space between a non-space and a letter: the tokenizer's pieces split there. */
const wordStart = (text: string, at: number): boolean =>
  text[at] === ' ' && /\S/.test(text[at - 1] ?? ' ') && /\p{L}/u.test(text[at + 1] ?? '');

/** Tokens of `text` as a provider counts a user's text, in linear time. */
function countText(text: string, count: typeof countO200k): number {
  return pieces(text).reduce((sum, piece) => sum + count(piece, AS_TEXT), 0);
}

/**
 * Input tokens of a chat request for `model`.
 *
 * @example
 * const input = estimateTokens([{ role: 'user', content: 'Hello!' }], 'gpt-4o');
 */
export function estimateTokens(messages: readonly Message[], model: string): number {
  if (OPENAI.test(model)) {
    const cl100k = CL100K.test(model);
    const count = cl100k ? countCl100k : countO200k;
    // Chat framing is the same across each encoding's models: count it with a representative
    // one (model names newer than the tokenizer's list still count), each message's framing
    // with a header of one token ("user") in place of its name or role, counted as text.
    const framing = messages.map(() => ({ role: 'user' as const, content: '' }));
    const framed = cl100k ? encodeCl100k(framing, 'gpt-4') : encodeO200k(framing, 'gpt-4o');
    return messages.reduce(
      (sum, m) => sum - 1 + countText(headerOf(m), count) + countText(text(m.content), count),
      framed.length,
    );
  }
  const characters = messages.reduce(
    (sum, m) => sum + text(m.content).length + (typeof m.name === 'string' ? m.name.length : 0),
    0,
  );
  return Math.ceil(characters / 3.5) + 4 * messages.length + 3;
}

/** What heads a message in the chat format: its name, else its role. */
const headerOf = (m: Message): string =>
  typeof m.name === 'string' && m.name
    ? m.name
    : typeof m.role === 'string' && m.role
      ? m.role
      : 'system';

/**
 * Tokens of plain text (no chat framing) for `model`: exact for OpenAI-family models, else
 * ceil(characters / 3.5). What the integrations count of a streamed answer cut short, which no
 * provider reported.
 *
 * @example
 * const output = estimateTextTokens('Hello, world', 'gpt-4o'); // 3
 */
export function estimateTextTokens(text: string, model: string): number {
  if (typeof text !== 'string' || text === '') return 0;
  if (OPENAI.test(model)) return countText(text, CL100K.test(model) ? countCl100k : countO200k);
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
