/**
 * The lazy loaders of `@opentelemetry/api` (an optional peer dependency) in the SDK and the
 * handlers: a missing package, or a module that is not the API, is "no metrics", never an error.
 */
import * as otel from '@opentelemetry/api';
import { loadOtelApi as handlersLoad } from '@sluice/lambdas/telemetry';
import { describe, expect, it } from 'vitest';
import { loadOtelApi as sdkLoad } from '../../packages/client/src/telemetry.js';

describe.each([
  ['the SDK', sdkLoad],
  ['the handlers', handlersLoad],
])("%s's loader", (_, load) => {
  it('answers undefined, without throwing, for a package that is not installed', async () => {
    await expect(load('@opentelemetry/api-not-installed')).resolves.toBeUndefined();
  });

  it('answers undefined for a module that is not the API', async () => {
    await expect(load('node:path')).resolves.toBeUndefined();
  });

  it('loads the API when it is installed, sharing its global registry', async () => {
    const api = await load();
    expect(api).toBeDefined();
    expect(api?.metrics.getMeterProvider()).toBe(otel.metrics.getMeterProvider());
  });
});
