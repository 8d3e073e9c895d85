// What a chart says when it shows nothing for a reason the person can fix: a channel with no
// data (a typo, most often: `train.rn1`), or a field its messages do not carry. Pure text
// from what the chart knows; live.ts decides when to ask and shows the result.

/** Edit distance (insertions, deletions, substitutions), for "channels like it". */
export function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** Up to `max` of `names` that look like `name`: close in spelling, or sharing its prefix. */
export function like(name: string, names: string[], max = 3): string[] {
  const stem = name.includes(".") ? name.slice(0, name.lastIndexOf(".") + 1) : null;
  const limit = Math.max(2, Math.floor(name.length / 4));
  return names
    .filter((n) => n !== name)
    .map((n) => ({ n, d: distance(name, n) }))
    .filter(({ n, d }) => d <= limit || (stem !== null && n.startsWith(stem)))
    .sort((a, b) => a.d - b.d || a.n.localeCompare(b.n))
    .slice(0, max)
    .map(({ n }) => n);
}

/** "no data yet on train.rn1; readable channels like it: train.run1" (one clause per channel). */
export function noDataText(empty: string[], readable: string[]): string {
  return empty
    .map((ch) => {
      const near = like(ch, readable);
      return near.length ? `no data yet on ${ch}; readable channels like it: ${near.join(", ")}` : `no data yet on ${ch}`;
    })
    .join(" · ");
}

/** Sorted field names, the first `max` of them. */
export function fieldList(fields: string[], max = 12): string {
  const names = fields.sort();
  return names.slice(0, max).join(", ") + (names.length > max ? `, … (${names.length} in all)` : "");
}

/** "field los", or "fields los, acc". */
export function fieldsNamed(names: string[]): string {
  return names.length === 1 ? `field ${names[0]}` : `fields ${names.join(", ")}`;
}

/**
 * Fields asked for (and the x field) that no message carried, with the fields that came:
 * "no field los on train.run1 yet; its fields: loss, step". Null when nothing is missing.
 */
export function missingFieldsText(
  wanted: string[],
  seen: Map<string, Set<string>>,
  max = 12,
  numeric?: Map<string, Set<string>>,
): string | null {
  const all = new Set<string>();
  for (const fs of seen.values()) for (const f of fs) all.add(f);
  const missing = wanted.filter((f) => !all.has(f));
  if (!missing.length && numeric && seen.size) {
    // The field comes but never as a number (text such as "high", or only null): nothing to
    // draw, and without this the chart stays empty with no word why.
    const nums = new Set<string>();
    for (const fs of numeric.values()) for (const f of fs) nums.add(f);
    const text = wanted.filter((f) => !nums.has(f));
    if (!text.length) return null;
    const what = text.length === 1 ? `field ${text[0]} has` : `fields ${text.join(", ")} have`;
    const list = fieldList([...nums], max);
    return `${what} no numbers on ${[...seen.keys()].join(", ")} yet (text or null values); numeric fields: ${list || "none"}`;
  }
  if (!missing.length || !seen.size) return null;
  const list = fieldList([...all], max);
  const where = [...seen.keys()].join(", ");
  return `no ${fieldsNamed(missing)} on ${where} yet; ${seen.size === 1 ? "its" : "their"} fields: ${list}`;
}
