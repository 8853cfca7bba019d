import { PAGE } from './ownership.ts';

export interface Span {
  base: number;
  size: number;
}

/** The whole pages holding [addr, addr+bytes). */
export function pageSpan(addr: number, bytes: number): Span {
  const base = Math.floor(addr / PAGE) * PAGE;
  const end = Math.ceil((addr + Math.max(bytes, 1)) / PAGE) * PAGE;
  return { base, size: end - base };
}
