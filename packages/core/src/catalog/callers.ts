/**
 * Callers bound to tenants: an entity may name `callers`, IAM principal ARN patterns, and then
 * only a principal one of them matches may act for it or its descendants (acquire, available,
 * usage, adjust, release). The principal is the one API Gateway's IAM authorizer reports.
 */
import { PolicyRefusal } from '../errors.js';

/**
 * A principal ARN pattern: an IAM role, user or root, an STS assumed role or federated user,
 * or (`arn:aws:iam::123456789012:*`) any of an account's. `*` matches any run of characters and
 * `?` one, as in IAM policies, the account included (`arn:aws:iam::*:role/team-a-*` is every
 * account's team-a roles).
 */
export const CALLER_PATTERN =
  /^arn:aws(?:-[a-z]+)*:(?:iam::(?:[\d?]{12}|[\d?]*\*[\d*?]*):(?:root|(?:role|user)\/[\w+=,.@/*?-]+|\*[\w+=,.@/*?-]*)|sts::(?:[\d?]{12}|[\d?]*\*[\d*?]*):(?:(?:assumed-role|federated-user)\/[\w+=,.@/*?-]+|\*[\w+=,.@/*?-]*))$/;

/** Most patterns an entity may name. */
export const MAX_CALLERS = 20;

/**
 * Whether `pattern` matches all of `text`, `*` standing for any run of characters and `?` for
 * one: the greedy matcher that backs up to the last `*`, linear in practice and never worse than
 * their product (a regular expression of many `*` could backtrack without end).
 */
function globMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1; // where the last `*` is in the pattern
  let resume = 0; // where in the text it stands for nothing more yet
  while (t < text.length) {
    if (pattern[p] === '?' || (pattern[p] === text[t] && pattern[p] !== '*')) {
      p++;
      t++;
    } else if (pattern[p] === '*') {
      star = p++;
      resume = t;
    } else if (star >= 0) {
      p = star + 1;
      t = ++resume;
    } else return false;
  }
  while (pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * Whether one of `patterns` matches `principal`. An assumed-role session
 * (`arn:aws:sts::123456789012:assumed-role/team-a-api/session`) also matches as its role,
 * `arn:aws:iam::123456789012:role/team-a-api` (without the role's path, which the session ARN
 * does not carry).
 */
export function callerMatches(patterns: readonly string[], principal: string | undefined): boolean {
  if (!principal) return false;
  const role = principal.replace(
    /^arn:([\w-]+):sts::(\d{12}):assumed-role\/([^/]+)\/.*$/,
    'arn:$1:iam::$2:role/$3',
  );
  return patterns.some((p) => globMatches(p, principal) || globMatches(p, role));
}

/**
 * Refuses (403 `caller_not_allowed`) a principal that some level's `callers` does not match:
 * every level of the hierarchy that names callers must match it.
 */
export function checkCallers(
  levels: readonly (readonly string[])[],
  entity: string,
  principal: string | undefined,
): void {
  if (levels.some((patterns) => !callerMatches(patterns, principal))) {
    throw new PolicyRefusal(
      'caller_not_allowed',
      principal
        ? `${principal} may not act for ${entity}`
        : `${entity} names its callers, and this request has no caller identity`,
    );
  }
}
