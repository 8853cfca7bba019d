/**
 * The hypervisor's probe points and stat groups (hyp layer), declared once: name, payload type
 * and what a firing means; each counter with what it counts. Components own a `Probe` per
 * point (hw/probe.ts): `hyp.cmdq.probes.verdict`, `hyp.own.probes.change`, `hyp.probes.trap`,
 * `hyp.probes.reshadow`, `shadowQ.probes.append`;
 * and the record made from their group: `hyp.stats`, `hyp.cmdq.stats`, `shadowQ.stats`,
 * `hyp.steStoreStats` under the 'trap-writes' STE shadowing, `hyp.idmap.blocks` (every SMMU
 * stage-2) and `hyp.idmap.stats` (the shared stage-2), and `hyp.pv.stats` (with `calls` and
 * `refused`, under the paravirtual designs).
 */
import { probePoint, statGroup } from '../hw/probe.ts';
import type { DataAbort } from '../hw/bus.ts';
import type { CmdCheck } from './smmuv3/cmd-policy.ts';
import type { OwnershipChange } from './mem/ownership.ts';
import { PV_CALLS, PV_CALL_NAMES, ERRNO_NAMES, type PvCallName, type ErrnoName } from './pv/abi.ts';

/** The hypervisor's verdict on one host command, before it is acted on. */
export interface CommandVerdict {
  /** the command as copied from the host queue (the emulator's buffer: copy it to keep it) */
  readonly words: Uint32Array;
  /** FORWARD, RESHADOW or a refusal (hyp/smmuv3/cmd-policy.ts) */
  readonly verdict: number;
  /** the check's rule, reason and StreamID to reshadow */
  readonly check: Readonly<CmdCheck>;
  /** the host queue pointer (index and wrap) of the command */
  readonly hostPtr: number;
}

export const HYP_PROBES = {
  verdict: probePoint<CommandVerdict>(
    'hyp.cmdq.verdict',
    'hyp',
    "the hypervisor's verdict on one host command (FORWARD, RESHADOW or REFUSE)",
  ),
  ownershipChange: probePoint<OwnershipChange>(
    'hyp.ownership.change',
    'hyp',
    'a page ownership transition, once its listeners accepted it (or its undo, after a veto)',
  ),
  trap: probePoint<DataAbort>(
    'hyp.trap',
    'hyp',
    'a data abort taken to the hypervisor (host or guest), before it is handled',
  ),
  reshadow: probePoint<number>(
    'hyp.ste.reshadow',
    'hyp',
    "a StreamID whose shadow STE the hypervisor is about to rebuild from the host's",
  ),
  shadowAppend: probePoint<ShadowAppend>(
    'hyp.shadowq.append',
    'hyp',
    'a command about to be written to the shadow queue the hardware reads',
  ),
  bbmWindow: probePoint<BbmWindow>(
    'hyp.shared-s2.bbm',
    'hyp',
    "a block of the shared stage-2 is broken (invalid, TLBs invalidated) and not yet re-made: the SMMU's and the CPU's accesses to it fault now",
  ),
} as const;

/** A break-before-make window in the shared stage-2 (a reused record: copy what you keep). */
export interface BbmWindow {
  /** the block being split: its IPA (= PA) and size */
  base: number;
  size: number;
}

/** One command the hypervisor puts in the shadow queue (a reused record: copy what you keep). */
export interface ShadowAppend {
  /** the command (4 words; the caller's buffer) */
  words: Uint32Array;
  /** the host queue pointer it came from, or HYP_SLOT for the hypervisor's own */
  hostPtr: number;
}

export const HYP_STATS = {
  traps: statGroup('hyp.traps', 'hyp', "the hypervisor's trap handling", {
    traps: 'data aborts taken (host and guests)',
    mmioTraps: "host accesses to the SMMU's registers",
    memoryTraps: 'host accesses to memory it may not touch (a stage-2 fault)',
    reshadows: 'stream table entries reshadowed',
    refusedAccesses: 'register accesses refused by policy',
  }),
  hostCmdq: statGroup('hyp.cmdq', 'hyp', "the host command queue's emulation", {
    forwarded: 'host commands copied to the shadow queue',
    rejected: 'host commands refused (an illegal command in their shadow slot)',
    dropped: 'host commands refused under a policy that does not reject: skipped',
    syncRewrites: 'CMD_SYNCs with CS=SIG_IRQ rewritten to SEV with no MSI (G1)',
    prodWrites: 'host CMDQ_PROD writes trapped',
    hwErrors: 'command errors the hardware reported on the shadow queue',
  }),
  shadowQ: statGroup('hyp.shadowq', 'hyp', 'the shadow command queue the hardware reads', {
    host: "the host's commands the hardware consumed",
    hyp: "the hypervisor's own commands the hardware consumed",
    published: 'PROD writes to the hardware',
    syncs: "the hypervisor's own CMD_SYNCs issued and waited for",
  }),
  stage2Blocks: statGroup(
    'hyp.s2.blocks',
    'hyp',
    "blocks in the SMMU's stage-2 for the host, and their splits when part of one leaves the host",
    {
      blockSplits: 'blocks split by break-before-make (invalidate, TLBI + CMD_SYNC, then a table)',
      blockUnmaps: 'whole blocks unmapped because all of their pages left the host (no split)',
      bbmWindows:
        'break-before-make windows: from the block made invalid to its table installed, DMA anywhere in the block faults',
      bbmPages:
        'pages that stay with the host but were unreachable in those windows (summed over windows)',
      splitTlbis: 'TLBI commands the splits asked for (TLBI_S2_IPA over the block, TLBI_NH_ALL)',
      splitSyncs: 'CMD_SYNCs the splits asked for (one after each batch)',
    },
  ),
  sharedS2: statGroup(
    'hyp.shared-s2',
    'hyp',
    "the host CPU stage-2 shared with the SMMU (policy smmuStage2 'cpu-shared')",
    {
      s2Faults: 'host CPU stage-2 faults handled by mapping the block around them lazily',
      lazyMaps4K: 'pages (4 KiB) mapped lazily',
      lazyMaps2M: '2 MiB blocks mapped lazily',
      lazyMaps1G: '1 GiB blocks mapped lazily',
      unmaps: 'leaves (pages or blocks) unmapped whole on donations',
      cpuTlbis: 'CPU stage-2 TLB invalidations (modeled as a count: one per break or unmap batch)',
      smmuTlbis:
        'TLBI_S2_IPA and TLBI_NH_ALL (VMID 0) commands issued to the SMMU for the shared stage-2',
      lazyDmaFaults:
        'stage-2 translation faults of host devices on host memory the host CPU has not touched yet (not an isolation breach)',
      bbmDmaFaults: 'stage-2 translation faults of host devices inside a break-before-make window',
      cpuS2Pages: "page-table pages of the shared stage-2 (the CPU's: none are the SMMU's own)",
    },
  ),
  steStores: statGroup(
    'hyp.ste-wp',
    'hyp',
    "the host stream table write-protected in the host CPU stage-2 ('trap-writes' STE shadowing)",
    {
      steStoreTraps: 'host stores to its write-protected stream table, emulated into the shadow',
      storeReshadows:
        'shadow STEs rebuilt from the host STE, sanitized as on CFGI (after a store to it, for the span an L1 store switched, at SMMUEN 0→1)',
      l1Stores: 'of those stores, stores to an L1 descriptor (the L2 the shadow follows changed)',
      spanReshadows: 'L1 descriptors whose span was reshadowed (an L1 store, or SMMUEN 0→1)',
      cfgisForwarded: "host CFGI_STEs checked and forwarded without reading the host's STE",
    },
  ),
} as const;

/** the paravirtual calls' counters: one per call (hyp/pv/abi.ts), one per errno */
const PV_CALL_COUNTERS = Object.fromEntries(
  PV_CALL_NAMES.map((n) => [n, `${n} hypercalls: ${PV_CALLS[n].doc}`]),
) as Record<PvCallName, string>;
const PV_REFUSAL_COUNTERS = {
  ...(Object.fromEntries(ERRNO_NAMES.map((e) => [e, `hypercalls refused with -${e}`])) as Record<
    ErrnoName,
    string
  >),
  NOT_SUPPORTED: 'hypercalls to a function the design does not offer (SMCCC_RET_NOT_SUPPORTED)',
};

export const PV_STATS = {
  pv: statGroup('hyp.pv', 'hyp', 'the paravirtual IOMMU (pKVM v1–v3 designs)', {
    hypercalls: 'hypercalls taken',
    refused: 'hypercalls refused (a negative return)',
    pagesMapped: 'pages map_pages mapped (4 KiB each; a block counts its pages)',
    pagesUnmapped: 'pages unmap_pages unmapped',
    refcountVetoes: 'donations refused because a page is mapped for DMA (its refcount > 0)',
    steWrites: 'STEs the hypervisor wrote for the host',
    cdWrites: 'CDs the hypervisor wrote for the host',
    tlbiBatches: 'invalidation batches (TLBIs + CMD_SYNC) issued by unmap_pages and free_domain',
    domains: 'domains live now (alloc_domain minus free_domain)',
  }),
  calls: statGroup('hyp.pv.calls', 'hyp', 'hypercalls taken, by call', PV_CALL_COUNTERS),
  refused: statGroup('hyp.pv.refused', 'hyp', 'hypercalls refused, by errno', PV_REFUSAL_COUNTERS),
} as const;
