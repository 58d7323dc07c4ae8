/**
 * The CloudWatch metrics the handlers emit (EMF, through Powertools), named once: the handlers
 * emit them and the construct's dashboard and alarms read them.
 */
export const METRICS = {
  namespace: 'Sluice',
  /** Every acquire decision. */
  decisions: 'decisions',
  /** Every acquire refused (429 or 422). */
  denials: 'denials',
  /** Refusals per limit, with the {@link METRICS.limitDimension} dimension. */
  denialsByLimit: 'denials_by_limit',
  /** Handler time per request (ms). */
  latency: 'latency',
  /** Settled usage counted by the aggregator: tokens, and cost in micro-USD. */
  usageTokens: 'usage_tokens',
  usageCost: 'usage_cost_micro_usd',
  /** Leases counted by the aggregator. */
  usageLeases: 'usage_leases',
  limitDimension: 'limit',
  /** Powertools adds it to every metric. */
  serviceDimension: 'service',
} as const;
