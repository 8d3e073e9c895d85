// Host metrics as a monitor shows them: one small chart per unit instead of ten series
// on two axes. A field no group claims goes to the chart of "the rest".

export interface HostGroup {
  key: string;
  title: string;
  units: string | null;
  test: (field: string) => boolean;
  hidden?: (field: string) => boolean;
}

export const HOST_GROUPS: HostGroup[] = [
  { key: "cpu", title: "CPU %", units: "%", test: (f) => /^cpu_percent(\.\d+)?$/.test(f), hidden: (f) => /\.\d+$/.test(f) },
  { key: "mem", title: "memory and swap %", units: "%", test: (f) => /^(mem|swap)_percent$/.test(f) },
  { key: "disk", title: "disk bytes/s", units: "B/s", test: (f) => /^disk_.*_bps$/.test(f) },
  { key: "net", title: "network bytes/s", units: "B/s", test: (f) => /^net_.*_bps$/.test(f) },
  { key: "load", title: "load", units: null, test: (f) => /^load\d+$/.test(f) },
];

/** The group a host field belongs to, or null. */
export function groupOf(field: string): HostGroup | null {
  return HOST_GROUPS.find((g) => g.test(field)) ?? null;
}

/** Host-group mode: no fields picked and every channel is a host collector's. */
export function isHostChart(channels: string[], fields: string[] | null | undefined): boolean {
  return !fields?.length && channels.length > 0 && channels.every((c) => c.startsWith("sys."));
}
