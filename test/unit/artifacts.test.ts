/**
 * Generated and shipped artifacts stay honest: the OpenAPI file matches the schemas, and the SDK
 * stays small in a consumer's bundle.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OPENAPI_FILE, renderOpenApi } from '@sluice/lambdas/openapi';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

describe('docs/openapi.json', () => {
  it('is what `npm run openapi` generates from the schemas today', () => {
    expect(readFileSync(OPENAPI_FILE, 'utf8')).toBe(renderOpenApi());
  });
});

describe('@sluice/client', () => {
  it('adds at most 30 KB minified to a consumer bundle, with the AWS SDK left external', async () => {
    const out = await build({
      stdin: {
        contents: "import { SluiceClient } from '@sluice/client'; export const c = SluiceClient;",
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
    console.log(`@sluice/client bundle: ${(bytes / 1024).toFixed(1)} KB minified`);
    expect(bytes).toBeLessThanOrEqual(30 * 1024);
  });
});
