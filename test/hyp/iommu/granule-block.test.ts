/**
 * The block granule (policy idmapGranule 'block', preset pkvm-block) against the page granule
 * (pkvm), on a machine with the hypervisor booted. Expected values come from the machine's layout
 * (test/reference.ts: 1 GiB of RAM at 0x4000_0000, the hypervisor's 64 MiB at the top, the
 * SMMU's 128 KiB of registers) and the VMSAv8-64 geometry of the idmap (4 KiB granule, 48-bit
 * IPA: a walk reads levels 0..3, a table has 512 entries, a level-2 block maps 2 MiB).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { get } from '../../../hw/bits.ts';
import { OP, Opcode, TTL, NUM, SCALE, IPA, VMID } from '../../../hw/smmu/commands.ts';
import { STE } from '../../../hw/smmu/ste.ts';
import { Machine } from '../../../hw/machine.ts';
import { HYP_SLOT } from '../../../hyp/smmuv3/shadowq.ts';
import { OwnershipError } from '../../../hyp/mem/ownership.ts';
import { PkvmHyp } from '../../../hyp/pkvm.ts';
import { Idmap } from '../../../hyp/iommu/idmap.ts';
import type { IoPgtable } from '../../../hw/vmsa/io-pgtable.ts';
import { makePolicy, type PolicyName } from '../../../hyp/policy/policy.ts';
import { IsolationOracle } from '../../../scenarios/check/oracle.ts';
import { loadScenarios } from '../../../scenarios/engine/loader.ts';
import { runScenario } from '../../../scenarios/engine/runner.ts';
import { RAM_BASE, SMMU_BASE } from '../../reference.ts';
import {
  bootHyp,
  bootWithDriver,
  HOST_PAGES,
  HYP_BASE,
  PAGE,
  SMMU_MMIO_SIZE,
} from '../pkvm-rig.ts';
import { ArmSmmuV3 } from '../../../host/driver/driver.ts';

const M2 = 2 ** 21;
/** the 2 MiB block of RAM the donations land in (host memory, away from the driver's tables) */
const BLOCK = 0x4100_0000;
const PA = BLOCK + 5 * PAGE;

/** The commands the SMMU consumes while `fn` runs: opcode, and the TLBI_S2_IPA fields. */
function consumed(
  m: Machine,
  fn: () => void,
): Array<{ op: number; ttl?: number; pages?: number; ipa?: number }> {
  const out: Array<{ op: number; ttl?: number; pages?: number; ipa?: number }> = [];
  const off = m.smmu.cmdq.probes.command.subscribe((c) => {
    const op = get(c.words, Opcode);
    if (op === OP.TLBI_S2_IPA) {
      expect(get(c.words, VMID)).toBe(0);
      out.push({
        op,
        ttl: get(c.words, TTL),
        // a range TLBI covers (NUM+1) << SCALE pages of the 4 KiB TG
        pages: (get(c.words, NUM) + 1) * 2 ** get(c.words, SCALE),
        ipa: get(c.words, IPA) * PAGE,
      });
    } else out.push({ op });
  });
  try {
    fn();
  } finally {
    off();
  }
  return out;
}

/** The page tables a stage-1 walk of `iova` reads, from the host's table memory (4 levels, 9 index bits each). */
function s1Tables(m: Machine, ttbr: number, iova: number): number[] {
  const out = [ttbr];
  let t = ttbr;
  for (let level = 0; level < 3; level++) {
    const shift = 12 + 9 * (3 - level);
    const d = m.mem.read64(t + (Math.floor(iova / 2 ** shift) % 512) * 8);
    expect(d & 3n).toBe(3n); // a table descriptor
    t = Number(d & 0xffff_ffff_f000n);
    out.push(t);
  }
  return out;
}

/** A machine with `ramSize` of RAM, pkvm-block booted and the host driver probed (the SMMU on). */
function bootWithDriverOn(ramSize: number): { m: Machine; hyp: PkvmHyp } {
  const m = new Machine({ ramSize, devices: [{ name: 'gpu', sid: 9 }] });
  const hyp = new PkvmHyp(m, { policy: makePolicy('pkvm-block') }).boot();
  new ArmSmmuV3(m.bus, { base: SMMU_BASE, pages: { ...HOST_PAGES } }).probe();
  return { m, hyp };
}

/** The idmap's io-pgtable (the shadow-idmap stage-2 both designs use). */
function table(hyp: PkvmHyp): IoPgtable {
  expect(hyp.idmap).toBeInstanceOf(Idmap);
  return (hyp.idmap as Idmap).pgtable;
}

/** Whether every page of [base, end) is identity-mapped by the idmap exactly when the host may access it. */
function idmapMatchesOwnership(hyp: PkvmHyp, base: number, end: number): string | null {
  const pt = table(hyp);
  for (let a = base; a < end; a += PAGE) {
    const want = hyp.own.hostMay(a) ? a : null;
    const got = pt.iovaToPhys(a);
    if (got !== want)
      return `0x${a.toString(16)}: idmap ${String(got)}, host may access: ${want !== null}`;
  }
  return null;
}

describe('pkvm-block: the idmap with blocks (designs.md §1.9, future work)', () => {
  it('boots with fewer idmap table pages than pkvm: no level-3 table under the host RAM', () => {
    // both: the level-0 root, one level-1 table (IPA 0..512 GiB), a level-2 table for each GiB
    // with something mapped (GiB 0: MMIO, GiB 1: RAM), and a level-3 table for each 2 MiB that
    // holds part of the SMMU's registers (a hole in the MMIO blocks: the host may not touch them)
    const smmuBlocks =
      Math.floor((SMMU_BASE + SMMU_MMIO_SIZE - 1) / M2) - Math.floor(SMMU_BASE / M2) + 1;
    const common = 1 + 1 + 2 + smmuBlocks;
    // pkvm maps memory with pages: one level-3 table per 2 MiB of host RAM, [RAM_BASE, HYP_BASE)
    const hostRamBlocks = (HYP_BASE - RAM_BASE) / M2;
    expect(hostRamBlocks).toBe(480);
    const page = bootHyp({ policy: 'pkvm' }).hyp;
    const block = bootHyp({ policy: 'pkvm-block' }).hyp;
    expect(page.idmap.tablePages).toBe(common + hostRamBlocks);
    expect(block.idmap.tablePages).toBe(common);
    expect(block.idmap.tablePages).toBe(5);
    // the same pages mapped, and the hyp pool holds the difference
    expect(block.idmap.mappedPages).toBe(page.idmap.mappedPages);
    expect(page.pool.pagesInUse - block.pool.pagesInUse).toBe(hostRamBlocks);
    // host RAM as 2 MiB blocks at level 2 (960 MiB from a 1 GiB boundary: no 1 GiB block fits)
    for (const a of [RAM_BASE, BLOCK, HYP_BASE - PAGE]) {
      expect(table(block).lookup(a)!.level).toBe(2);
      expect(table(page).lookup(a)!.level).toBe(3);
    }
    expect(table(block).lookup(HYP_BASE)).toBe(null);
    expect(table(block).lookup(SMMU_BASE)).toBe(null);
    expect(idmapMatchesOwnership(block, RAM_BASE, RAM_BASE + 2 ** 30)).toBe(null);
    expect(block.idmap.blocks.blockSplits).toBe(0);
  });

  it('a DMA through a host stage-1 domain reads fewer stage-2 descriptors: its stage-2 walks end at level 2', () => {
    const reads: Record<string, { descReads: number; walks: number; expected: number }> = {};
    for (const policy of ['pkvm', 'pkvm-block'] as const) {
      const b = bootWithDriver({ policy, devices: [{ name: 'nic', sid: 8 }] });
      const d = b.dma.attachDefault(8);
      expect([d.pgtable.levels, d.pgtable.ias]).toEqual([4, 48]);
      const iova = b.dma.map(8, PA, PAGE);
      // the IPAs the nested walk translates through stage 2: the CD (the shadow STE's context
      // pointer, a linear table with one CD), the four stage-1 tables, and the output address
      const cd = get(b.hyp.shadowSte(8), STE.S1ContextPtr) * 64;
      const ipas = [cd, ...s1Tables(b.m, d.pgtable.s1!.ttbr, iova), PA];
      // each distinct stage-2 leaf is walked once (later lookups hit the IOTLB): a 4 KiB page
      // is four descriptors (levels 0..3), a 2 MiB block three (levels 0..2); stage 1 reads four
      const leaf = policy === 'pkvm' ? PAGE : M2;
      const s2Walks = new Set(ipas.map((a) => Math.floor(a / leaf))).size;
      const expected = 4 + s2Walks * (policy === 'pkvm' ? 4 : 3);
      const st = b.m.smmu.translator.stats(8);
      const [r0, w0] = [st.descReads, st.walks];
      const r = b.m.devices.get('nic')!.read(iova, 4);
      expect(r.ok && r.pa).toBe(PA);
      reads[policy] = { descReads: st.descReads - r0, walks: st.walks - w0, expected };
      expect(st.walks - w0).toBe(s2Walks + 1);
      expect(st.descReads - r0).toBe(expected);
    }
    // the host's tables and CD share one 2 MiB block (six distinct pages under pkvm)
    expect(reads['pkvm']!.descReads).toBe(4 + 6 * 4);
    expect(reads['pkvm-block']!.descReads).toBe(4 + 2 * 3);
    expect(reads['pkvm-block']!.descReads).toBeLessThan(reads['pkvm']!.descReads);
  });

  it('a donation inside a block costs a split: its TLBIs and CMD_SYNCs first, then the page’s own; only the donated page becomes unreachable', () => {
    const cost: Record<string, number> = {};
    for (const policy of ['pkvm', 'pkvm-block'] as const) {
      const b = bootWithDriver({
        policy,
        devices: [
          { name: 'nic', sid: 8 },
          { name: 'gpu', sid: 9 },
        ],
      });
      b.dma.attachDefault(8);
      b.dm.attach(9, b.dm.alloc('identity'));
      const gpu = b.m.devices.get('gpu')!;
      const nic = b.m.devices.get('nic')!;
      const neighbours = [BLOCK, PA - PAGE, PA + PAGE, BLOCK + M2 - PAGE];
      // cache translations of the block (stage-2 only for the identity device, nested for the nic)
      for (const a of [PA, ...neighbours]) expect(gpu.read(a, 4).ok).toBe(true);
      const iova = b.dma.map(8, PA, PAGE);
      expect(nic.read(iova, 4).ok).toBe(true);
      const tables0 = b.hyp.idmap.tablePages;
      b.drv.events.drain();

      const cmds = consumed(b.m, () => b.hyp.donate(PA, PAGE, 'guest:vm1'));
      const page = [
        { op: OP.TLBI_S2_IPA, ttl: 3, pages: 1, ipa: PA },
        { op: OP.CMD_SYNC },
        { op: OP.TLBI_NH_ALL },
        { op: OP.CMD_SYNC },
      ];
      const st = b.hyp.idmap.blocks;
      if (policy === 'pkvm') {
        expect(cmds).toEqual(page);
        expect(b.hyp.idmap.tablePages).toBe(tables0);
        expect(st.blockSplits).toBe(0);
      } else {
        // break: the block's leaf (TTL 2) over its 512 pages, and the combined entries; then
        // the page's own invalidation as under pkvm
        expect(cmds).toEqual([
          { op: OP.TLBI_S2_IPA, ttl: 2, pages: 512, ipa: BLOCK },
          { op: OP.CMD_SYNC },
          { op: OP.TLBI_NH_ALL },
          { op: OP.CMD_SYNC },
          ...page,
        ]);
        // the make: one level-3 table for the block's other 511 pages
        expect(b.hyp.idmap.tablePages).toBe(tables0 + 1);
        expect({ ...st }).toEqual({
          blockSplits: 1,
          blockUnmaps: 0,
          bbmWindows: 1,
          bbmPages: 511,
          splitTlbis: 2,
          splitSyncs: 2,
        });
        expect(table(b.hyp).lookup(PA + PAGE)!.level).toBe(3);
        expect(table(b.hyp).lookup(BLOCK + M2)!.level).toBe(2); // the next block is whole
      }
      cost[policy] = cmds.length;
      // afterwards: the donated page is unreachable, its neighbours in the former block are not
      const r = gpu.read(PA, 4);
      expect(r.ok).toBe(false);
      expect(nic.read(iova, 4).ok).toBe(false);
      const ev = b.drv.events.drain();
      expect(ev).toHaveLength(2);
      for (const e of ev) expect(e).toMatchObject({ type: 'F_TRANSLATION', fields: { S2: 1 } });
      for (const a of neighbours) {
        expect(gpu.read(a, 4).ok, `0x${a.toString(16)}`).toBe(true);
        expect(nic.read(b.dma.map(8, a, PAGE), 4).ok).toBe(true);
      }
      expect(b.drv.events.drain()).toHaveLength(0);
      expect(idmapMatchesOwnership(b.hyp, BLOCK - M2, BLOCK + 2 * M2)).toBe(null);
    }
    expect(cost['pkvm-block']).toBe(2 * cost['pkvm']!);
  });

  it('in the break-before-make window a DMA to any page of the block faults; under pkvm the neighbour stays reachable', () => {
    for (const policy of ['pkvm', 'pkvm-block'] as const) {
      const b = bootWithDriver({ policy, devices: [{ name: 'gpu', sid: 9 }] });
      b.dm.attach(9, b.dm.alloc('identity'));
      const gpu = b.m.devices.get('gpu')!;
      expect(gpu.read(PA + PAGE, 4).ok).toBe(true); // the block (or page) cached
      b.drv.events.drain();
      // the first TLBI_NH_ALL the hypervisor queues: the stage-2 TLBI before it has completed
      // (under pkvm-block that is the break's, before the table is installed)
      let during: boolean | undefined;
      const off = b.hyp.shadowQ.probes.append.subscribe((a) => {
        if (
          during === undefined &&
          a.hostPtr === HYP_SLOT &&
          get(a.words, Opcode) === OP.TLBI_NH_ALL
        )
          during = gpu.read(PA + PAGE, 4).ok;
      });
      b.hyp.donate(PA, PAGE, 'guest:vm1');
      off();
      expect(during, policy).toBe(policy === 'pkvm');
      const ev = b.drv.events.drain();
      if (policy === 'pkvm-block') {
        // the host sees a translation fault for a page it still owns
        expect(ev).toHaveLength(1);
        expect(ev[0]).toMatchObject({
          type: 'F_TRANSLATION',
          fields: { S2: 1, IPA: '0x' + (PA + PAGE).toString(16) },
        });
        expect(b.hyp.idmap.blocks.bbmWindows).toBe(1);
      } else {
        expect(ev).toHaveLength(0);
        expect(b.hyp.idmap.blocks.bbmWindows).toBe(0);
      }
      // after the donation the page is reachable again under both
      expect(gpu.read(PA + PAGE, 4).ok).toBe(true);
      expect(gpu.read(PA, 4).ok).toBe(false);
    }
  });

  it('a donation of whole blocks and across block boundaries: blocks unmapped at their level, split at the edges', () => {
    const b = bootWithDriver({ policy: 'pkvm-block', devices: [{ name: 'gpu', sid: 9 }] });
    b.dm.attach(9, b.dm.alloc('identity'));
    const gpu = b.m.devices.get('gpu')!;
    // from 3 pages before a block to 2 pages after the next one: two edges split, one block whole
    const base = BLOCK + M2 - 3 * PAGE;
    const size = 3 * PAGE + M2 + 2 * PAGE;
    for (const a of [base - PAGE, base, BLOCK + M2, base + size - PAGE, base + size])
      gpu.read(a, 4);
    const cmds = consumed(b.m, () => b.hyp.donate(base, size));
    const s2 = cmds.filter((c) => c.op === OP.TLBI_S2_IPA);
    // the first block's break, the whole block at TTL 2, the last block's break, then the pages'
    expect(s2.slice(0, 3)).toEqual([
      { op: OP.TLBI_S2_IPA, ttl: 2, pages: 512, ipa: BLOCK },
      { op: OP.TLBI_S2_IPA, ttl: 2, pages: 512, ipa: BLOCK + M2 },
      { op: OP.TLBI_S2_IPA, ttl: 2, pages: 512, ipa: BLOCK + 2 * M2 },
    ]);
    expect(s2.slice(3).every((c) => c.ttl === 3)).toBe(true);
    expect(s2.slice(3).reduce((n, c) => n + c.pages!, 0)).toBe(size / PAGE);
    const st = b.hyp.idmap.blocks;
    expect([st.blockSplits, st.blockUnmaps, st.bbmWindows, st.bbmPages]).toEqual([
      2,
      1,
      2,
      512 - 3 + (512 - 2),
    ]);
    for (const a of [base, BLOCK + M2, BLOCK + M2 + 0x1234, base + size - PAGE])
      expect(gpu.read(a, 4).ok).toBe(false);
    for (const a of [base - PAGE, BLOCK, base + size, BLOCK + 3 * M2 - PAGE])
      expect(gpu.read(a, 4).ok).toBe(true);
    expect(idmapMatchesOwnership(b.hyp, BLOCK - M2, BLOCK + 4 * M2)).toBe(null);
    // reclaim: mapped again (the whole 2 MiB slot is empty: a block again; the split edges stay pages)
    b.hyp.reclaim(base, size);
    expect(table(b.hyp).lookup(BLOCK + M2)!.level).toBe(2);
    expect(table(b.hyp).lookup(base)!.level).toBe(3);
    expect(idmapMatchesOwnership(b.hyp, BLOCK - M2, BLOCK + 4 * M2)).toBe(null);
    for (const a of [base, BLOCK + M2, base + size - PAGE]) expect(gpu.read(a, 4).ok).toBe(true);
  });

  it('a 1 GiB block splits the same way, recursively down to the page: a level-2 table of blocks, a level-3 table around the page', () => {
    // 2 GiB of RAM: the second GiB, [0x8000_0000, 0xC000_0000), holds nothing of the hypervisor
    const G1 = 2 ** 30;
    const m = new Machine({ ramSize: 2 * G1, devices: [{ name: 'gpu', sid: 9 }] });
    const hyp = new PkvmHyp(m, { policy: makePolicy('pkvm-block') }).boot();
    const pt = table(hyp);
    const GB = RAM_BASE + G1;
    const pa = GB + 3 * M2 + 7 * PAGE;
    expect(pt.lookup(pa)!.level).toBe(1);
    const tables0 = hyp.idmap.tablePages;
    const cmds = consumed(m, () => hyp.donate(pa, PAGE));
    // SMMUEN=0 (no host driver): the TLBIs are deferred to one full invalidation at enable
    expect(cmds).toEqual([]);
    expect({ ...hyp.idmap.blocks }).toMatchObject({
      blockSplits: 1,
      bbmWindows: 1,
      bbmPages: G1 / PAGE - 1,
    });
    // the make: a level-2 table (511 blocks of 2 MiB), a level-3 table (511 pages)
    expect(hyp.idmap.tablePages).toBe(tables0 + 2);
    expect(pt.lookup(GB)!.level).toBe(2);
    expect(pt.lookup(GB + G1 - PAGE)!.level).toBe(2);
    expect(pt.lookup(pa - PAGE)!.level).toBe(3);
    expect(pt.lookup(pa)).toBe(null);
    expect(idmapMatchesOwnership(hyp, pa - M2, pa + M2)).toBe(null);
    for (const a of [GB, pa - PAGE, pa + PAGE, GB + G1 - PAGE]) expect(pt.iovaToPhys(a)).toBe(a);
  });

  it('with the SMMU on, a 1 GiB break is one range TLBI at TTL 1 over 2^18 pages', () => {
    const G1 = 2 ** 30;
    const b = bootWithDriverOn(2 * G1);
    const pa = RAM_BASE + G1 + 5 * PAGE;
    const cmds = consumed(b.m, () => b.hyp.donate(pa, PAGE));
    expect(cmds.filter((c) => c.op === OP.TLBI_S2_IPA)).toEqual([
      { op: OP.TLBI_S2_IPA, ttl: 1, pages: G1 / PAGE, ipa: RAM_BASE + G1 },
      { op: OP.TLBI_S2_IPA, ttl: 3, pages: 1, ipa: pa },
    ]);
    expect(b.hyp.idmap.blocks.splitTlbis).toBe(2);
  });

  it('without range invalidation (IDR3.RIL=0) the break is one TLBI_S2_IPA at the block’s address, as Linux steps by the leaf size', () => {
    const m = new Machine({
      smmu: { features: { ril: false, archMinor: 1 } },
      devices: [{ name: 'gpu', sid: 9 }],
    });
    const hyp = new PkvmHyp(m, { policy: makePolicy('pkvm-block') }).boot();
    new ArmSmmuV3(m.bus, { base: SMMU_BASE, pages: { ...HOST_PAGES } }).probe();
    const gpu = m.devices.get('gpu')!;
    const cmds = consumed(m, () => hyp.donate(PA, PAGE));
    // a non-range TLBI (TG=0) has no NUM/SCALE/TTL: it removes every entry holding the address
    expect(cmds.map((c) => [c.op, c.ipa, c.ttl, c.pages])).toEqual([
      [OP.TLBI_S2_IPA, BLOCK, 0, 1],
      [OP.CMD_SYNC, undefined, undefined, undefined],
      [OP.TLBI_NH_ALL, undefined, undefined, undefined],
      [OP.CMD_SYNC, undefined, undefined, undefined],
      [OP.TLBI_S2_IPA, PA, 0, 1],
      [OP.CMD_SYNC, undefined, undefined, undefined],
      [OP.TLBI_NH_ALL, undefined, undefined, undefined],
      [OP.CMD_SYNC, undefined, undefined, undefined],
    ]);
    expect(table(hyp).iovaToPhys(PA + PAGE)).toBe(PA + PAGE);
    expect(gpu.read(PA, 4).ok).toBe(false);
  });

  it('a split whose invalidation cannot complete is refused and leaves the block as it was', () => {
    const b = bootHyp({ policy: 'pkvm-block' });
    const idmap = b.hyp.idmap;
    const before = table(b.hyp).lookup(PA)!;
    const tables = idmap.tablePages;
    const err = new Error('the command queue is disabled');
    const change = {
      transition: 'donate',
      base: PA,
      pages: 1,
      hostAccessChanged: true,
      hostCanAccess: false,
      mmio: false,
    } as const;
    let flushes = 0;
    expect(() =>
      idmap.update(
        change,
        () => {
          flushes++;
          throw err;
        },
        false,
      ),
    ).toThrow(err);
    expect(flushes).toBe(1); // the break's, and nothing after it
    expect(table(b.hyp).lookup(PA)).toEqual(before);
    expect(idmap.tablePages).toBe(tables);
    expect(idmap.blocks.bbmWindows).toBe(1);
    expect(idmap.blocks.blockSplits).toBe(0);
  });

  /** The isolation oracle over the hardware state, with the hypervisor's ownership as its policy. */
  const oracle = (m: Machine, hyp: PkvmHyp): IsolationOracle =>
    new IsolationOracle(m, {
      protectedRanges: () => hyp.protectedRanges(),
      rangesFor: (name) => {
        const dev = m.devices.get(name);
        return dev ? hyp.rangesForSid(dev.sid) : undefined;
      },
    });

  it('the isolation oracle holds through donations inside, across and of whole blocks; without the TLBIs it does not', () => {
    for (const weaken of [[], ['donate-tlbi' as const]]) {
      const b = bootWithDriver({
        policy: 'pkvm-block',
        weaken,
        devices: [
          { name: 'nic', sid: 8 },
          { name: 'gpu', sid: 9 },
        ],
      });
      b.dma.attachDefault(8);
      b.dm.attach(9, b.dm.alloc('identity'));
      const o = oracle(b.m, b.hyp);
      const gpu = b.m.devices.get('gpu')!;
      const nic = b.m.devices.get('nic')!;
      expect(o.check().ok).toBe(true);
      const donations: Array<[number, number, 'hyp' | 'guest:vm1']> = [
        [PA, PAGE, 'guest:vm1'], // inside a block
        [BLOCK + 3 * M2 - 2 * PAGE, 4 * PAGE, 'hyp'], // across a block boundary
        [BLOCK + 5 * M2, M2, 'guest:vm1'], // a whole block
        [PA + 7 * PAGE, 3 * PAGE, 'hyp'], // inside the block split before
      ];
      let breaches = 0;
      for (const [base, size, to] of donations) {
        // translations of the range cached first, through stage 2 alone and nested
        for (let a = base; a < base + size; a += PAGE) {
          gpu.read(a, 4);
          nic.read(b.dma.map(8, a, PAGE), 4);
        }
        b.hyp.donate(base, size, to);
        const r = o.check();
        if (!r.ok) breaches++;
        if (weaken.length === 0) expect(r.breaches).toEqual([]);
      }
      // the weakened design leaves the cached blocks and pages in the IOTLB: the oracle sees it
      if (weaken.length) expect(breaches).toBe(donations.length);
      else expect(idmapMatchesOwnership(b.hyp, BLOCK - M2, BLOCK + 7 * M2)).toBe(null);
    }
  });

  it('the whole host attack catalog under machine policy pkvm-block: every attack fails with isolation intact', () => {
    let ran = 0;
    for (const sc of loadScenarios('pkvm-attacks')) {
      if (!sc.variants.includes('pkvm')) continue;
      if (sc.machine.policy !== undefined && sc.machine.policy !== 'pkvm') continue;
      const blocks = { ...sc, machine: { ...sc.machine, policy: 'pkvm-block' as PolicyName } };
      const r = runScenario(blocks, { hyp: 'pkvm' });
      expect(r.ok, `${sc.name}: ${JSON.stringify(r.failed)}`).toBe(true);
      expect(r.isolation, sc.name).toEqual({ ok: true, breaches: [] });
      ran++;
    }
    expect(ran).toBeGreaterThanOrEqual(30);
  });

  it('property: after any sequence of donations and reclaims the idmap maps exactly the host-accessible pages', () => {
    // a window of four 2 MiB blocks (and a page either side), donations of 1 page to a block and a half
    const W0 = BLOCK;
    const WPAGES = (4 * M2) / PAGE;
    const op = fc.record({
      kind: fc.constantFrom('donate', 'reclaim'),
      to: fc.constantFrom('hyp' as const, 'guest:vm1' as const),
      first: fc.integer({ min: 0, max: WPAGES - 1 }),
      pages: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 768 })),
    });
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 12 }), (ops) => {
        const b = bootHyp({ policy: 'pkvm-block' });
        for (const o of ops) {
          const pages = Math.min(o.pages, WPAGES - o.first);
          const base = W0 + o.first * PAGE;
          try {
            if (o.kind === 'donate') b.hyp.donate(base, pages * PAGE, o.to);
            else b.hyp.reclaim(base, pages * PAGE, o.to);
          } catch (e) {
            if (!(e instanceof OwnershipError)) throw e; // refused: nothing changed
          }
          const bad = idmapMatchesOwnership(b.hyp, W0 - PAGE, W0 + 4 * M2 + PAGE);
          if (bad !== null)
            throw new Error(`after ${o.kind} ${pages} pages at 0x${base.toString(16)}: ${bad}`);
        }
        // blocks stay where nothing was split: every whole 2 MiB the host still owns outside the window
        expect(table(b.hyp).lookup(W0 + 4 * M2)!.level).toBe(2);
        // the counts add up: each window is one split (or one refused)
        const st = b.hyp.idmap.blocks;
        expect(st.bbmWindows).toBe(st.blockSplits);
        expect(st.splitSyncs).toBe(2 * st.blockSplits);
      }),
      { numRuns: 40, seed: 17 },
    );
  });
});
