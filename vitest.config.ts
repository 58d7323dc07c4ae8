import { defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// These machines run Node 20 (Lambda runs 22); the AWS SDK's reminder about that is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/** The tiers that need DynamoDB Local: one for the whole run, shared by them (global-setup.ts). */
const withDynamoDB = { globalSetup: ['test/support/global-setup.ts'] };

/**
 * Sluice's packages resolve to their TypeScript sources in here, to their builds elsewhere.
 * Without 'module', as Vitest's own default: Node loads what is left external.
 */
const conditions = ['sluice-source', ...defaultServerConditions.filter((c) => c !== 'module')];

export default defineConfig({
  ssr: { resolve: { conditions } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // `npm test` runs every tier with --coverage: one report for the whole run. It counts what runs
    // in the test processes (the sources, through sluice-source), not what child processes run
    // (npm start in the e2e tier, the CLI's bin, the bundles under Node 22).
    coverage: {
      provider: 'v8',
      include: ['packages/*/src/**/*.ts', 'lambdas/src/**/*.ts', 'lib/src/**/*.ts'],
      // The console's page runs in the browser the e2e tier drives, where v8 counts nothing.
      exclude: ['packages/console/src/app/**'],
      // Totals printed; every file's figures in coverage/coverage.txt, and as JSON beside it.
      reporter: ['text-summary', ['text', { file: 'coverage.txt' }], 'json-summary', 'json'],
      thresholds: { 'packages/core/src/**': { lines: 90, branches: 85 } },
      reportOnFailure: true,
    },
    projects: [
      // No Java, no network: `npm run test:unit`. Pure code, so its files share a process (each
      // file's own process costs more than most of them take).
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], isolate: false },
      },
      {
        extends: true,
        test: { name: 'integration', include: ['test/integration/**/*.test.ts'], ...withDynamoDB },
      },
      { extends: true, test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], ...withDynamoDB } },
      {
        extends: true,
        test: { name: 'infra', include: ['test/infra/**/*.test.ts'], ...withDynamoDB },
      },
    ],
  },
});
