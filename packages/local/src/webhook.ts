/**
 * Budget alerts, locally: POSTed as JSON to a webhook (`SLUICE_ALERT_WEBHOOK`), with retries.
 * The aggregator keeps an alert that could not be delivered listed as undelivered; decisions
 * never wait for it.
 */
import { ALERT_EVENT, type AlertSender } from '@sluice/core/internal';

export interface WebhookOptions {
  /** Attempts in all. @default 3 */
  readonly attempts?: number;
  /** Wait before the second attempt; doubled for each next one. @default 500 */
  readonly backoffMs?: number;
  /** Per attempt. @default 5_000 */
  readonly timeoutMs?: number;
}

/** Sends each alert as an EventBridge event would carry it: `{ source, "detail-type", detail }`. */
export function webhookSender(url: string, options: WebhookOptions = {}): AlertSender {
  const attempts = options.attempts ?? 3;
  const backoffMs = options.backoffMs ?? 500;
  return async (alert) => {
    let last: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, backoffMs * 2 ** (attempt - 1)));
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            source: ALERT_EVENT.source,
            'detail-type': ALERT_EVENT.detailType,
            detail: alert,
          }),
          signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
        });
        await res.body?.cancel();
        if (res.ok) return;
        last = new Error(`the alert webhook answered ${res.status}`);
      } catch (error) {
        last = error;
      }
    }
    throw last;
  };
}
