/**
 * CloudWatch EMF metrics (Powertools) of the usage aggregator: settled tokens, cost and leases.
 * The request handlers emit none: acquire's decisions are counted from its decision log by the
 * construct's metric filters, and latency is API Gateway's and Lambda's own.
 */
import { Metrics } from '@aws-lambda-powertools/metrics';
import { serviceName } from './environment.js';
import { METRICS } from './metric-names.js';

export const metrics = new Metrics({ namespace: METRICS.namespace, serviceName: serviceName() });
