/**
 * Helpers of tsraft's benchmark programs (private to this repository, never published): read a
 * command line with `node:util` `parseArgs` and refuse a bad one in one line with exit status 2
 * ({@link benchCommandLine} and the option validators; {@link parseCommandLine} alone for a
 * program's tests of its options), read processes' CPU seconds from `/proc`, and check out a
 * baseline commit to measure beside this tree ({@link baselineTree}).
 */
export { type BaselineTreeOptions, baselineTree } from './baseline-tree.ts';
export {
  benchCommandLine,
  type CommandLine,
  type CommandLineSpec,
  parseCommandLine,
} from './command-line.ts';
export { commitOption } from './commit-option.ts';
export {
  choiceListOption,
  choiceOption,
  type IntegerRange,
  integerListOption,
  integerOption,
  type NumberRange,
  numberOption,
} from './option-values.ts';
export { processCpu, processCpuWithChildren, readProcStat } from './process-cpu.ts';
export { UsageError } from './usage-error.ts';
