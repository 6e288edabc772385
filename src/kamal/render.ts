/** The imported config as YAML text: a header, and comments on the keys the operator must look at. */
import { Document, isMap, isScalar, type Pair } from 'yaml';
import type { Doc, OutputComment } from './context.js';

export function renderConfig(config: Doc, header: string, comments: readonly OutputComment[]): string {
  const doc = new Document(config);
  doc.commentBefore = header;
  for (const { at, text } of comments) {
    const pair = pairAt(doc, at);
    if (pair && isScalar(pair.key)) pair.key.commentBefore = text.replace(/^/gm, ' ');
  }
  return doc.toString({ lineWidth: 0 });
}

/** The map entry at `at` (keys from the root), if the document has it. */
function pairAt(doc: Document, at: readonly string[]): Pair | undefined {
  let node: unknown = doc.contents;
  let pair: Pair | undefined;
  for (const key of at) {
    if (!isMap(node)) return undefined;
    pair = node.items.find((p) => isScalar(p.key) && p.key.value === key);
    node = pair?.value;
  }
  return pair;
}
