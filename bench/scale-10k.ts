/**
 * The scale bench (scale.ts) at 10,000 apps on 1,000 SIMULATED hosts, each app on 3 to
 * 10 of them: the size issue #15 asks a controller to hold (a no-op resync within 5 s,
 * a deploy's first action within 100 ms during one, event-loop lag p99 within 20 ms,
 * RSS under 500 MB). To get there in minutes, not an hour, the initial rollout runs at
 * zero host latency (its figure is then berth's own cost) and each app rolls all its
 * hosts in one batch (parallelism 100%); everything after it is measured at LAN latency.
 *
 *   node --import tsx bench/scale-10k.ts        (about 10 minutes on 2 cores)
 *
 * Writes bench/results/scale-10k.json and prints scale.ts's table.
 */
process.env.BENCH_APPS ??= '10000';
process.env.BENCH_HOSTS ??= '1000';
process.env.BENCH_HOSTS_PER_APP ??= '3-10';
process.env.BENCH_FAST_ROLLOUT ??= '1';
process.env.BENCH_PARALLELISM ??= '100%';
process.env.BENCH_RESYNC_RUNS ??= '10';
process.env.BENCH_DEPLOY_SAMPLES ??= '20';
process.env.BENCH_RESULT_NAME ??= 'scale-10k.json';
await import('./scale.js');
