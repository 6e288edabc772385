import type { Parallelism } from '../domain/app-spec.js';

/**
 * Hosts per batch: a count, or a percentage of the fleet rounded down (at most that share
 * of the hosts takes an unproven version at once: "67%" of 3 hosts is 2, where rounding
 * up made it all 3, no rolling at all); never below 1.
 */
export function batchSize(parallelism: Parallelism, hostCount: number): number {
  const n = parallelism.kind === 'count' ? parallelism.value : Math.floor((parallelism.value * hostCount) / 100);
  return Math.max(1, Math.min(n, Math.max(hostCount, 1)));
}

/** Splits the hosts, in their configured order, into consecutive batches. */
export function toBatches<T>(hosts: readonly T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < hosts.length; i += size) batches.push(hosts.slice(i, i + size));
  return batches;
}
