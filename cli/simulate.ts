import type { Command } from 'commander';
import type { Io } from './main.ts';

/** The simulator's subcommands (simulate, check, bench) are registered here. */
export function registerSimulatorCommands(_program: Command, _io: Io): void {}
