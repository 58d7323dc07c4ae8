/**
 * Sluice's CloudWatch metrics, named once: the handlers and the construct's metric filters emit
 * them, its dashboard and alarms read them.
 *
 * Acquire's come from its decision log (one line per decision, one per limit that refused), which
 * the construct's metric filters count, so the hot path carries no metrics library; the usage
 * aggregator's are EMF through Powertools.
 */
export const METRICS = {
  namespace: 'Sluice',
  /** Every acquire decision (a metric filter over {@link DECISION_LOG.decision} lines). */
  decisions: 'decisions',
  /** Every acquire refused (429 or 422). */
  denials: 'denials',
  /** Refusals per limit, with the {@link METRICS.limitDimension} dimension. */
  denialsByLimit: 'denials_by_limit',
  /** Settled usage counted by the aggregator: tokens, and cost in micro-USD. */
  usageTokens: 'usage_tokens',
  usageCost: 'usage_cost_micro_usd',
  /** Leases counted by the aggregator. */
  usageLeases: 'usage_leases',
  limitDimension: 'limit',
  /** Every metric has it: Powertools adds it, and every log line carries `service`. */
  serviceDimension: 'service',
} as const;

/**
 * The `message` of acquire's decision log lines: `decision` (fields `decision`: `allowed`,
 * `rate_limited` or `exceeds_capacity`; `entity`, `resource`, `tokens`) and, for each limit that
 * refused, `refused by limit` (field `limit`).
 */
export const DECISION_LOG = {
  decision: 'decision',
  refusedBy: 'refused by limit',
} as const;
