/**
 * The soak's checks again, on the record a run left (`record.json` in its directory), without
 * running anything: to look into a run, or to show with `--tamper` that the checks catch what
 * they should.
 *
 *   npx tsx --conditions=sluice-source test/soak/recheck.ts /tmp/sluice-soak-<run> [--tamper double|tight|forget]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { checks, type SoakRecord } from './oracle.js';
import { TAMPERING } from './tamper.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { tamper: { type: 'string' } },
});
const dir = positionals[0];
const tamper = values.tamper === undefined ? undefined : TAMPERING[values.tamper];
if (!dir || (values.tamper !== undefined && !tamper)) {
  console.error(`usage: recheck.ts <run directory> [--tamper ${Object.keys(TAMPERING).join('|')}]`);
  process.exit(2);
}
const raw = JSON.parse(readFileSync(join(dir, 'record.json'), 'utf8'));
// JSON has no Map and no Infinity: the record wrote maps as entries, and infinities as null.
const record: SoakRecord = {
  ...raw,
  table: new Map(raw.table),
  history: new Map(raw.history),
  versions: raw.versions.map((v: { untilMs: number | null }) => ({
    ...v,
    untilMs: v.untilMs ?? Number.POSITIVE_INFINITY,
  })),
};
const rows = checks(tamper ? tamper(record) : record);
for (const row of rows) {
  console.log(`${row.pass ? 'pass' : 'FAIL'} ${row.name}: ${row.observed}`);
  for (const detail of row.details.slice(0, 3)) console.log(`  - ${detail}`);
}
process.exitCode = rows.every((r) => r.pass) ? 0 : 1;
