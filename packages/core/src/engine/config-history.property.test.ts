import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ClusterConfig, encodeConfig } from '../configuration.ts';
import type { LogEntry } from '../log-entry.ts';
import { ConfigHistory } from './config-history.ts';

/**
 * ConfigHistory against its definition (Raft paper 6): the configuration in effect at index i
 * is the one of the last configuration entry at or before i in the log, or the snapshot's
 * when there is none; appends, truncations, compactions and snapshot installs change the log.
 * The model is the log itself: every entry since the start, each carrying a configuration or
 * not, and the configuration the snapshot carried.
 */

const CONFIGS: ClusterConfig[] = [
  { voters: ['a'] },
  { voters: ['a', 'b', 'c'] },
  { voters: ['a', 'b', 'c', 'd'], outgoingVoters: ['a', 'b', 'c'] },
  { voters: ['b', 'c', 'd'], learners: ['a'], autoPromote: ['a'] },
];

type Operation =
  | { readonly kind: 'append'; readonly configs: readonly (number | null)[] }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'compact'; readonly at: number }
  | { readonly kind: 'restore'; readonly ahead: number; readonly config: number };

const operationArb: fc.Arbitrary<Operation> = fc.oneof(
  {
    arbitrary: fc.record({
      kind: fc.constant('append'),
      configs: fc.array(fc.option(fc.nat(CONFIGS.length - 1), { nil: null }), {
        minLength: 1,
        maxLength: 4,
      }),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ kind: fc.constant('truncate'), at: fc.nat() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('compact'), at: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('restore'),
      ahead: fc.integer({ min: 0, max: 5 }),
      config: fc.nat(CONFIGS.length - 1),
    }),
    weight: 1,
  },
);

interface Model {
  base: { index: number; config: ClusterConfig };
  /** Entries after the base: the configuration each carries, or null. */
  entries: (ClusterConfig | null)[];
}

function modelAt(model: Model, index: number): ClusterConfig {
  for (let i = index - model.base.index - 1; i >= 0; i--) {
    const config = model.entries[i];
    if (config !== null && config !== undefined) return config;
  }
  return model.base.config;
}

function entry(index: number, config: ClusterConfig | null): LogEntry {
  return config === null
    ? { index, term: 1, type: 'command', data: new Uint8Array([index % 256]) }
    : { index, term: 1, type: 'config', data: encodeConfig(config) };
}

describe('ConfigHistory against the log it summarizes', () => {
  it('gives the configuration of the latest configuration entry at or before any index, through appends, truncations, compactions and snapshot installs', () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(CONFIGS.length - 1), { maxLength: 5 }),
        fc.array(operationArb, { maxLength: 40 }),
        (initial, operations) => {
          const model: Model = {
            base: { index: 0, config: CONFIGS[0]! },
            entries: initial.map((c) => CONFIGS[c]!),
          };
          const history = new ConfigHistory(
            model.base,
            model.entries.map((config, i) => entry(i + 1, config)),
          );
          for (const op of operations) {
            const last = model.base.index + model.entries.length;
            switch (op.kind) {
              case 'append': {
                const configs = op.configs.map((c) => (c === null ? null : CONFIGS[c]!));
                history.appended(configs.map((config, i) => entry(last + 1 + i, config)));
                model.entries.push(...configs);
                break;
              }
              case 'truncate': {
                const span = model.entries.length;
                if (span === 0) break;
                const at = model.base.index + 1 + (op.at % span);
                history.truncatedFrom(at);
                model.entries.length = at - model.base.index - 1;
                break;
              }
              case 'compact': {
                const at = model.base.index + (op.at % (model.entries.length + 1));
                const config = modelAt(model, at);
                history.compactedTo(at);
                model.entries = model.entries.slice(at - model.base.index);
                model.base = { index: at, config };
                break;
              }
              case 'restore': {
                const at = last + op.ahead;
                history.restored(at, CONFIGS[op.config]!);
                model.base = { index: at, config: CONFIGS[op.config]! };
                model.entries = [];
                break;
              }
            }
            const end = model.base.index + model.entries.length;
            expect(history.current.config).toEqual(modelAt(model, end));
            for (let index = model.base.index; index <= end; index++) {
              expect(history.at(index).config).toEqual(modelAt(model, index));
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
