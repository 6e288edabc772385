/**
 * What a bench's heap holds, for `BENCH_HEAP=1` runs of scale.ts (a diagnostic: the
 * forced collections and the sampling profiler change the timings, so such a run
 * measures memory only).
 *
 * Two views:
 * - **by allocation site**: V8's sampling heap profiler (the one `--heap-prof` uses),
 *   started before the work, read at the end: it keeps a sample only while the object
 *   sampled is alive, so what it reports is live memory, by the stack that allocated it.
 *   Each sample counts for the innermost frame in this repository's code (src/, bench/,
 *   test/), so a JSON.parse of a spec counts for the store function that parsed it.
 * - **by component**: heapUsed after a full collection, before and after a component's
 *   memory is let go (the caller says how): exactly what the component retains.
 */
import { readFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;

/** Collects everything unreachable (twice: weak references and finalisers free more on the second). */
export function fullGc(): MemoryMiB {
  collect();
  collect();
  return memoryMiB();
}

export interface MemoryMiB {
  rssMiB: number;
  heapUsedMiB: number;
  /** What V8 holds for its heap, used or not: RSS follows it. */
  heapTotalMiB: number;
  /** Memory of JS objects outside V8's heap (Buffers, native addons' objects). */
  externalMiB: number;
}

export function memoryMiB(): MemoryMiB {
  const m = process.memoryUsage();
  return { rssMiB: mib(m.rss), heapUsedMiB: mib(m.heapUsed), heapTotalMiB: mib(m.heapTotal), externalMiB: mib(m.external) };
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

export class HeapSampler {
  private readonly session = new Session();

  /**
   * `allocated`: keep the samples of objects collected since (V8's includeObjectsCollectedBy*
   * flags), so the profile counts every byte allocated, garbage included, not live memory.
   */
  async start(o: { allocated?: boolean } = {}): Promise<void> {
    this.session.connect();
    // 64 KB between samples: cheap enough for a 10-minute run, fine enough for components of a few MB.
    // Counting garbage: 8 KB, for a pass's few KB.
    await this.session.post('HeapProfiler.startSampling', {
      samplingInterval: o.allocated ? 8 * 1024 : 64 * 1024,
      ...(o.allocated ? { includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } : {}),
    });
  }

  /** Sampled memory (MiB) by innermost repository frame ("file:function"), largest first: live memory, or after start({ allocated: true }) every byte allocated. */
  async bySite(root: string, top = 25): Promise<Array<{ site: string; MiB: number }>> {
    return (await this.sites(root, top)).bySite;
  }

  /** bySite, and the bytes of every sample (anywhere). */
  async sites(root: string, top = 25): Promise<{ totalBytes: number; bySite: Array<{ site: string; MiB: number }> }> {
    const { profile } = (await this.session.post('HeapProfiler.getSamplingProfile')) as { profile: { head: ProfileNode } };
    const sizes = new Map<string, number>();
    const walk = (n: ProfileNode, site: string) => {
      const url = n.callFrame.url;
      const ours = url.includes(root) && !url.includes('node_modules');
      const here = ours ? `${url.slice(url.indexOf(root) + root.length)}:${n.callFrame.functionName || '(anonymous)'}` : site;
      if (n.selfSize > 0) sizes.set(here, (sizes.get(here) ?? 0) + n.selfSize);
      for (const c of n.children) walk(c, here);
    };
    walk(profile.head, '(outside berth code)');
    const bySite = [...sizes]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([site, bytes]) => ({ site, MiB: mib(bytes) }));
    return { totalBytes: [...sizes.values()].reduce((a, b) => a + b, 0), bySite };
  }

  async stop(): Promise<void> {
    await this.session.post('HeapProfiler.stopSampling');
    this.session.disconnect();
  }
}

/** heapUsed after a full collection, then after each `release` in turn: what each one held (MiB). */
export function retainedBy(steps: Array<{ component: string; release: () => void }>): { before: number; after: number; components: Array<{ component: string; MiB: number }> } {
  const before = fullGc().heapUsedMiB;
  let last = before;
  const components = steps.map(({ component, release }) => {
    release();
    const now = fullGc().heapUsedMiB;
    const held = Math.round((last - now) * 10) / 10;
    last = now;
    return { component, MiB: held };
  });
  return { before, after: last, components };
}

/**
 * The process's resident memory by kind of mapping (Linux /proc/self/smaps): `[heap]` is
 * malloc's main arena; anonymous mappings are V8's heap pages and the other malloc arenas
 * (64 MiB each, told apart by size); files are code (node, shared libraries).
 */
export function residentByMapping(): Record<string, number> {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return {};
  }
  const kb: Record<string, number> = {};
  let kind = '';
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const path = head[3]!;
      const size = (parseInt(head[2]!, 16) - parseInt(head[1]!, 16)) / 1024;
      kind = path.startsWith('[') ? path : path ? 'files' : size >= 65_536 - 1 && size <= 65_536 ? 'anonymous 64 MiB (malloc arenas)' : 'anonymous (V8 heap, other)';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) kb[kind] = (kb[kind] ?? 0) + Number(rss[1]);
  }
  return Object.fromEntries(Object.entries(kb).map(([k, v]) => [k, mib(v * 1024)]));
}
