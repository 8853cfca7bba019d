/**
 * Strategy (b): how host STEs reach the hardware (policy `steShadowing`).
 *  - 'cfgi':        shadowed when the host issues CFGI_STE (pKVM): ste-shadow-cfgi.ts.
 *  - 'trap-writes': the host table is mapped read-only in the host CPU stage-2 and each store
 *                   to it trapped and reshadowed; CFGI_STE is only checked and forwarded:
 *                   ste-shadow-wp.ts.
 * The optional members are the write-protecting design's hooks; 'cfgi' has none of them, so
 * nothing on its paths looks at them more than once (at boot).
 */
import type { DataAbort, MmioBus } from '../../hw/bus.ts';
import type { StatRecord } from '../../hw/probe.ts';
import type { RuleName, HypPolicy } from '../policy/policy.ts';
import type { HYP_STATS } from '../probes.ts';
import type { WriteProtect } from '../mem/write-protect.ts';
import type { FailureLog } from '../policy/failure.ts';
import type { PageOwnership } from '../mem/ownership.ts';
import type { HostMemory } from '../mem/hostmem.ts';
import type { ShadowQueue } from './shadowq.ts';
import type { ShadowStreamTable } from './strtab.ts';
import type { SteSanitizeEnv } from './ste-sanitize.ts';
import type { HostView } from './host-view.ts';
import { CfgiSteShadowing } from './ste-shadow-cfgi.ts';
import { WpSteShadowing } from './ste-shadow-wp.ts';

/** The write-protecting design's counters (declared in HYP_STATS.steStores). */
export type SteStoreStats = StatRecord<typeof HYP_STATS.steStores>;

/** 'ok', or the failure outcome of a refused STE (recorded; the shadow STE is then abort). */
export type ShadowOutcome = 'ok' | 'reject' | 'log';

export interface SteShadowing {
  /** STEs reshadowed */
  readonly reshadows: number;
  /** The host asked for StreamID `sid`'s STE to take effect (CFGI_STE): bring the shadow STE up to date. */
  reshadow(sid: number): ShadowOutcome;
  /** host pages whose stores must trap (the host CPU stage-2 check reads it) */
  readonly writeProtect?: WriteProtect;
  /** A host memory trap: true when it was a store this design emulated, false to abort it. */
  memoryTrap?(a: DataAbort): boolean;
  /** SMMUEN 0→1 (or a new table taking effect at once): the host table in HostView is live. */
  tableLive?(): void;
  /** SMMUEN 1→0: the host table is no longer used. */
  tableGone?(): void;
  /**
   * SMMUEN 0→1 again after the table was released (the host wrote it unwatched meanwhile),
   * before the hardware is enabled: a SYNC_* outcome (hyp/smmuv3/shadowq.ts), SYNC_OK when done.
   */
  tableBack?(): number;
  /** A guest gave StreamID `sid` back to the host (its shadow STE is an abort STE now). */
  sidReturned?(sid: number): void;
  /** the write-protecting design's counters (HYP_STATS.steStores) */
  readonly storeStats?: SteStoreStats;
}

export interface SteShadowEnv {
  readonly view: HostView;
  readonly sidBits: number;
  readonly own: PageOwnership;
  readonly hostMem: HostMemory;
  readonly shadowQ: ShadowQueue;
  readonly strtab: ShadowStreamTable;
  readonly failures: FailureLog;
  readonly steEnv: SteSanitizeEnv;
  isRam(base: number, size: number): boolean;
  weak(r: RuleName): boolean;
  /** the guest a StreamID is assigned to, if any */
  sidGuest(sid: number): string | undefined;
  /** A shadow STE is about to be rebuilt from the host's (counted, and the reshadow probe fired). */
  noteReshadow(sid: number): void;
  /** the bus, for the hypervisor's own stores ('trap-writes' performs the host's trapped stores as the hyp) */
  readonly bus: MmioBus;
  /** RAM as [lo, hi) page-aligned bounds (what a write-protect set must cover) */
  readonly ram: { lo: number; hi: number };
}

/** The implementation the policy names (both are built). */
export function selectSteShadowing(policy: HypPolicy): (env: SteShadowEnv) => SteShadowing {
  switch (policy.steShadowing) {
    case 'cfgi':
      return (env) => new CfgiSteShadowing(env);
    case 'trap-writes':
      return (env) => new WpSteShadowing(env);
  }
}
