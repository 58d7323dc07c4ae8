/**
 * Validation messages: zod's English ones, for the checks Sluice's schemas make. Handed to
 * `z.config` instead of zod's English locale, which also carries words for formats Sluice never
 * checks (e-mail, UUID, IBAN, …): this keeps the Lambda bundles small. `validationErrorFrom`
 * reads "received undefined" as a missing field.
 */
import type * as z from 'zod/mini';

const UNITS: ReadonlyMap<string, string> = new Map([
  ['string', 'characters'],
  ['array', 'items'],
]);

const typeOf = (input: unknown): string =>
  input === null ? 'null' : Array.isArray(input) ? 'array' : typeof input;

const quote = (v: unknown) => (typeof v === 'string' ? `"${v}"` : String(v));

/** The message of one zod issue. */
export function message(issue: z.core.$ZodRawIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `Invalid input: expected ${issue.expected}, received ${typeOf(issue.input)}`;
    case 'invalid_value':
      return `Invalid option: expected one of ${issue.values.map(quote).join('|')}`;
    case 'too_big':
    case 'too_small': {
      const big = issue.code === 'too_big';
      const unit = UNITS.get(issue.origin ?? '');
      const adj = (big ? '<' : '>') + (issue.inclusive ? '=' : '');
      const value = String(big ? issue.maximum : issue.minimum);
      return `Too ${big ? 'big' : 'small'}: expected ${issue.origin ?? 'value'} to ${
        unit ? `have ${adj}${value} ${unit}` : `be ${adj}${value}`
      }`;
    }
    case 'invalid_format':
      return issue.format === 'regex'
        ? `Invalid string: must match pattern ${issue.pattern}`
        : `Invalid ${issue.format}`;
    default:
      return 'Invalid input';
  }
}
