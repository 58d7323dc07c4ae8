/**
 * The local server's own OpenTelemetry metric: the duration of each request a route answered,
 * as OpenTelemetry's HTTP conventions name it (in AWS, API Gateway measures this). The handlers'
 * metrics, which the server runs in-process, come from `@sluice/lambdas`' scope; this one from
 * `@sluice/local`'s. Recorded only when `@opentelemetry/api` loads and a `MeterProvider` is
 * registered globally; never at import time, and never holding an answer back.
 */
import type { Histogram, MeterProvider } from '@opentelemetry/api';
import { SECONDS_BUCKETS, withOtel } from '@sluice/lambdas/telemetry';

/** The instrumentation scope of the local server's metrics. */
export const LOCAL_SCOPE = '@sluice/local';

let cached:
  | { readonly provider: MeterProvider; readonly duration: Histogram | undefined }
  | undefined;

/** A route's request answered with `status`, taken at `startedAt` (`performance.now()`). */
export function requestAnswered(
  method: string,
  route: string,
  status: number,
  startedAt: number,
): void {
  const seconds = (performance.now() - startedAt) / 1_000;
  withOtel((api) => {
    const provider = api.metrics.getMeterProvider();
    if (cached?.provider !== provider) {
      cached = { provider, duration: undefined }; // until its histogram is made
      const meter = provider.getMeter(LOCAL_SCOPE);
      if (meter !== api.createNoopMeter())
        cached = {
          provider,
          duration: meter.createHistogram('http.server.request.duration', {
            description: 'Duration of HTTP server requests',
            unit: 's',
            advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
          }),
        };
    }
    cached.duration?.record(seconds, {
      'http.request.method': method,
      'http.route': route,
      'http.response.status_code': status,
      'url.scheme': 'http',
    });
  });
}
