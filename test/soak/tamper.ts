/**
 * Falsified records, to show that the checks catch what they claim to: run with
 * `--tamper <name>` and the named checks must fail.
 */
import type { SoakConfig } from './config.js';
import type { SoakRecord } from './oracle.js';

/** Every limit at half its size: as if the servers had admitted twice what they may. */
function halved(config: SoakConfig): SoakConfig {
  const half = <T extends { limit: number; burst?: number }>(l: T): T => ({
    ...l,
    limit: Math.max(1, Math.floor(l.limit / 2)),
    ...(l.burst !== undefined ? { burst: Math.max(1, Math.floor(l.burst / 2)) } : {}),
  });
  const each = <D extends { limits?: readonly { limit: number; burst?: number }[] }>(
    docs: Readonly<Record<string, D>>,
  ) =>
    Object.fromEntries(
      Object.entries(docs).map(([name, doc]) => [
        name,
        doc.limits ? { ...doc, limits: doc.limits.map(half) } : doc,
      ]),
    ) as Record<string, D>;
  return {
    ...config,
    resources: each(config.resources),
    plans: each(config.plans),
    entities: each(config.entities),
  };
}

export const TAMPERING: Readonly<Record<string, (record: SoakRecord) => SoakRecord>> = {
  /** Every admission counted twice (over-admission, check 1, must fail). */
  double: (record) => ({
    ...record,
    tap: record.tap.flatMap((x) =>
      x.note?.acquire?.lease
        ? [
            x,
            {
              ...x,
              id: -x.id - 1,
              note: {
                ...x.note,
                acquire: { ...x.note.acquire, lease: `${x.note.acquire.lease}'` },
              },
            },
          ]
        : [x],
    ),
  }),
  /** The oracle believes every limit was half as large (check 1 must fail). */
  tight: (record) => ({
    ...record,
    versions: record.versions.map((v) => ({ ...v, config: halved(v.config) })),
  }),
  /** One settled lease forgotten by its client (checks 3 and 4 must fail). */
  forget: (record) => ({ ...record, leases: record.leases.slice(1) }),
};
