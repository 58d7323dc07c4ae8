/**
 * Generated and shipped artifacts stay honest: the OpenAPI file matches the schemas, and the SDK
 * stays small in a consumer's bundle.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderOpenApi } from '@sluice/lambdas/openapi';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { OPENAPI_FILE } from '../../scripts/openapi.js';
import { benchFigures, capacity, defaultMix, withCapacitySection } from '../bench/capacity.js';

describe('docs/openapi.json', () => {
  it('is what `npm run openapi` generates from the schemas today', () => {
    expect(readFileSync(OPENAPI_FILE, 'utf8')).toBe(renderOpenApi());
  });
});

describe("the README's capacity section", () => {
  it('is what `npm run capacity -- --readme` generates from the model today', () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    // The formatter aligns table columns: compare the tables' cells, not their padding.
    const cells = (text: string) =>
      text.replace(/^\|.*$/gm, (row) => row.replace(/ +/g, '').replace(/-+/g, '-'));
    expect(cells(readme)).toBe(cells(withCapacitySection(readme)));
  });

  it('prices the default mix at the writes of the whole call the bench measured', () => {
    const figures = benchFigures();
    const { wcuPerCall } = capacity({ ...defaultMix(figures), calls: 1 });
    const measured = figures.wholeCall;
    expect(wcuPerCall.acquire).toBeCloseTo(measured.acquire, 2);
    expect(wcuPerCall.settle).toBeCloseTo(measured.settle, 2);
    expect(wcuPerCall.aggregator).toBe(measured.usage_history);
    expect(wcuPerCall.total).toBeCloseTo(measured.total, 1);
  });

  it('prices in-process calls at the same writes, without the HTTP API or a function per call', () => {
    const { costPerMillionCalls: http, inProcessCostPerMillionCalls: local } = capacity({
      ...defaultMix(),
      calls: 1,
    });
    expect(local.dynamodb).toBe(http.dynamodb);
    // The usage aggregator's share of Lambda alone: a hundred stream records per invocation.
    expect(local.lambda).toBeGreaterThan(0);
    expect(local.lambda).toBeLessThan(http.lambda / 10);
    expect(local.total).toBeCloseTo(http.total - http.httpApi - http.lambda + local.lambda, 1);
  });

  it('shards the hottest item so that each shard stays under half a partition', () => {
    const mix = { ...defaultMix(), calls: 1_000, scopes: 1, adjusts: 0 };
    const { hottestItemWcuPerSecond, shards, perShardWcuPerSecond } = capacity(mix);
    expect(hottestItemWcuPerSecond).toBe(3_000); // its acquire and its part of the settlement
    expect(shards).toBe(8);
    expect(perShardWcuPerSecond).toBeLessThanOrEqual(500);
  });
});

describe('@sluice/client, as built (npm run build)', () => {
  it('adds at most 30 KB minified to a consumer bundle, with the AWS SDK left external', async () => {
    const out = await build({
      stdin: {
        contents:
          "import { SluiceClient, fromOpenAI } from '@sluice/client'; import { sluiceGuard } from '@sluice/client/middy'; export const c = [SluiceClient, fromOpenAI, sluiceGuard];",
        resolveDir: fileURLToPath(new URL('../..', import.meta.url)),
        loader: 'ts',
      },
      bundle: true,
      minify: true,
      write: false,
      platform: 'node',
      format: 'esm',
      external: ['@aws-sdk/*', '@smithy/*', '@aws-crypto/*'],
      metafile: true,
    });
    const bytes = out.outputFiles[0]?.contents.byteLength ?? Number.POSITIVE_INFINITY;
    // What a consumer installs: the package's dist/, not its sources.
    const inputs = Object.keys(out.metafile.inputs);
    expect(inputs.some((f) => f.includes('packages/client/dist/'))).toBe(true);
    expect(inputs.filter((f) => f.includes('packages/client/src/'))).toEqual([]);
    // OpenTelemetry is an optional peer, loaded at run time only where it is installed.
    expect(inputs.filter((f) => f.includes('@opentelemetry'))).toEqual([]);
    // The in-process mode (the handlers, the engine) is its own entry's alone.
    expect(inputs.filter((f) => /in-process|lambdas\/|packages\/core\//.test(f))).toEqual([]);
    console.log(`@sluice/client bundle: ${(bytes / 1024).toFixed(1)} KB minified`);
    expect(bytes).toBeLessThanOrEqual(30 * 1024);
  });
});
