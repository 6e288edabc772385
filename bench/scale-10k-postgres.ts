/**
 * scale-10k.ts on PostgreSQL: the same 10,000 apps on 1,000 SIMULATED hosts, the store a
 * fresh database on the test bed's PostgreSQL (`test/hosts/testbed pg-up`). bench:needs-testbed
 *
 *   node --import tsx bench/scale-10k-postgres.ts
 *
 * Writes bench/results/scale-10k-postgres.json and prints scale.ts's table.
 */
process.env.BENCH_STORE ??= 'postgres';
process.env.BENCH_RESULT_NAME ??= 'scale-10k-postgres.json';
await import('./scale-10k.js');
