// Channel patterns: `*` matches any run of characters, `?` one character (as the
// server's token grants do). Anything else matches itself.

export function isPattern(ch: string): boolean {
  return /[*?]/.test(ch);
}

export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/** The names among `names` that any of `patterns` matches (plain names match themselves). */
export function matching(patterns: string[], names: string[]): string[] {
  const res = patterns.map(globToRegExp);
  return names.filter((n) => res.some((r) => r.test(n)));
}
