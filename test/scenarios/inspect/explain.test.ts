/**
 * The walk explainer (scenarios/inspect/explain.ts, `smmulab explain`). Expected values are worked out
 * from the scenarios' own tables; each comment says how.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadScenario } from '../../../scenarios/engine/loader.ts';
import {
  explainDma,
  formatExplain,
  type ExplainNode,
  type ExplainResult,
} from '../../../scenarios/inspect/explain.ts';
import { main } from '../../../scenarios/cli/main.ts';

const nested = loadScenario('bare-nested');
const s1 = loadScenario('bare-s1');

const top = (r: ExplainResult, kind: ExplainNode['kind']) =>
  r.tree.children!.filter((n) => n.kind === kind);

describe('explain: bare-nested, a stage-2 fault during the stage-1 walk', () => {
  // bare-nested: STE[10] is nested (Config=0b111) with S2TTB 0x40060000, S2T0SZ=24 (40-bit IPA),
  // S2SL0=1 with a 4KB granule (start level 1), S2R=1; its CD (0x40041000) has TTB0 = IPA 0xa0000000.
  // Stage 2 maps IPA 0x40000000-0x403fffff, 0x78000000-0x781fffff and the page 0x80000000 only.
  // IOVA 0x10000000: the level-0 index IOVA[47:39] is 0, so the first stage-1 descriptor is at
  // IPA 0xa0000000 + 0 = 0xa0000000, and stage 2 must translate that IPA before it can be read.
  // Stage 2 of 0xa0000000: L1 index IPA[39:30] = 2 → descriptor at 0x40060000 + 2*8 = 0x40060010,
  // a table (pt.map of IPA 0x80000000, the same 1GB slot, made it). The pool (0x78000000, RAM top
  // minus 128MB) handed out 0x78000000 for L1[1]'s level-2 table (steps 16-17) and 0x78001000 for
  // L1[2]'s (step 18). L2 index IPA[29:21] = 0x100 → 0x78001000 + 0x800 = 0x78001800: nothing
  // is mapped there, so the stage-2 walk faults: F_TRANSLATION with S2=1, CLASS=TT (a stage-1
  // descriptor IPA, reference §5.3) and IPA = the descriptor's IPA 0xa0000000.
  const r = explainDma(nested, { sid: 10, iova: 0x10000000n });

  it('reports F_TRANSLATION with S2=1, CLASS=TT and the stage-1 descriptor IPA', () => {
    expect(r.outcome).toMatchObject({
      ok: false,
      event: 'F_TRANSLATION',
      S2: 1,
      CLASS: 'TT',
      IPA: '0xa0000000',
      recorded: true,
    });
    // the event record as written: DW0 = StreamID 10 << 32 | 0x10; DW1 = RnW(35) | S2(39) | CLASS=1 (40);
    // DW2 = InputAddr; DW3 = IPA[55:12]
    expect(r.event?.written).toBe(true);
    expect(r.event?.raw).toEqual([
      '0x0000000a00000010',
      '0x0000018800000000',
      '0x0000000010000000',
      '0x00000000a0000000',
    ]);
    expect(r.event?.decoded).toMatchObject({
      type: 'F_TRANSLATION',
      sid: 10,
      fields: { S2: 1, CLASS: 1, RnW: 1, IPA: '0xa0000000', InputAddr: '0x10000000' },
    });
  });

  it('shows the stage-2 reads done for the level-0 stage-1 descriptor, which was never read', () => {
    expect(r.reads).toEqual([
      expect.objectContaining({
        stage: 2,
        level: 1,
        pa: '0x40060010',
        kind: 'table',
        for: 'tt',
        s1Level: 0,
        desc: '0x0000000078001003',
      }),
      expect.objectContaining({
        stage: 2,
        level: 2,
        pa: '0x78001800',
        kind: 'invalid',
        for: 'tt',
        s1Level: 0,
        desc: '0x0000000000000000',
      }),
    ]);
    const [walk] = top(r, 's1');
    expect(walk!.text).toContain('TTB0 0xa0000000');
    const l0 = walk!.children!;
    expect(l0).toHaveLength(1);
    expect(l0[0]!.text).toMatch(/^L0 descriptor @IPA 0xa0000000: not read/);
    const s2 = l0[0]!.children![0]!;
    expect(s2.kind).toBe('s2');
    expect(s2.data).toMatchObject({
      for: 'tt',
      ipa: '0xa0000000',
      s1Level: 0,
      fault: 'F_TRANSLATION',
      tlbHit: false,
    });
    expect(s2.children!.map((c) => c.data?.['pa'])).toEqual(['0x40060010', '0x78001800']);
    // the STE and CD are shown (from the configuration caches: the scenario's own DMA of SID 10 fetched them)
    expect(top(r, 'ste')[0]!.text).toContain('STE for SID 10 at PA 0x40010280'); // 0x40010000 + 10 * 64
    expect(top(r, 'ste')[0]!.data).toMatchObject({ cached: true, Config: 7 });
    expect(top(r, 'cd')[0]!.text).toMatch(/^CD 0 at IPA 0x40041000: ASID 4 \[config cache hit\]/);
    const text = formatExplain(r);
    expect(text).toContain('└─ FAULT F_TRANSLATION S2=1 CLASS=TT IPA=0xa0000000');
    expect(text).toContain(
      'smmulab decode event 0x0000000a00000010 0x0000018800000000 0x0000000010000000 0x00000000a0000000',
    );
  });

  it('--cold fetches the CD again, through stage 2 (the CD IPA 0x40041000 lies in the 2MB identity block)', () => {
    const c = explainDma(nested, { sid: 10, iova: 0x10000000n, cold: true });
    const cd = top(c, 'cd')[0]!;
    expect(cd.data).toMatchObject({ cached: false, addr: '0x40041000', addrIs: 'IPA' });
    const cdS2 = cd.children!.find((n) => n.kind === 's2')!;
    // L1 index of 0x40041000 is 1 → 0x40060008, a table to the pool's first page 0x78000000; L2 index 0
    // → 0x78000000, the 2MB block 0x40000000 (identity): PA 0x40041000
    expect(cdS2.data).toMatchObject({
      for: 'cd',
      ipa: '0x40041000',
      pa: '0x40041000',
      tlbHit: false,
    });
    expect(cdS2.children!.map((n) => [n.data?.['pa'], n.data?.['kind']])).toEqual([
      ['0x40060008', 'table'],
      ['0x78000000', 'block'],
    ]);
    expect(c.outcome).toMatchObject({
      event: 'F_TRANSLATION',
      S2: 1,
      CLASS: 'TT',
      IPA: '0xa0000000',
    });
  });

  it('the other nested cases: CLASS=CD for SID 9, CLASS=IN for SID 8 at 0x10001000, and a full nested success', () => {
    // STE[9]'s S1ContextPtr, IPA 0x90000000, is not mapped by stage 2: the CD fetch faults
    expect(explainDma(nested, { sid: 9, iova: 0x10000000n }).outcome).toMatchObject({
      event: 'F_TRANSLATION',
      S2: 1,
      CLASS: 'CD',
      IPA: '0x90000000',
    });
    // IOVA 0x10001000 → IPA 0xb0000000 (step 20), which stage 2 does not map: the final stage 2 faults
    const inFault = explainDma(nested, { sid: 8, iova: 0x10001000n, access: 'write' });
    expect(inFault.outcome).toMatchObject({
      event: 'F_TRANSLATION',
      S2: 1,
      CLASS: 'IN',
      IPA: '0xb0000000',
    });
    expect(top(inFault, 's2')[0]!.data).toMatchObject({
      for: 'in',
      ipa: '0xb0000000',
      fault: 'F_TRANSLATION',
    });
    // IOVA 0x10000000 → IPA 0x80000000 → PA 0x40300000; cold, so all four stage-1 levels are walked
    const ok = explainDma(nested, { sid: 8, iova: 0x10000000n, cold: true });
    expect(ok.outcome).toEqual({
      ok: true,
      pa: '0x40300000',
      ipa: '0x80000000',
      tlbHit: false,
      razwi: false,
    });
    expect(ok.reads.filter((x) => x.stage === 1).map((x) => x.level)).toEqual([0, 1, 2, 3]);
    // every stage-1 read is nested: its address is an IPA, and it has a stage-2 child
    for (const d of top(ok, 's1')[0]!.children!) expect(d.children?.[0]?.kind).toBe('s2');
  });
});

describe('explain: bare-s1, a stage-1 walk', () => {
  // bare-s1: STE[8] Config=0b101, CD at 0x40040000 with TTB0 0x40050000, T0SZ=16 (48-bit, start
  // level 0), 4KB granule. Step 19 pt.map maps IOVA 0x10000000 → PA 0x40100000 as a 4KB page,
  // allocating the L1, L2 and L3 tables from the pool at 0x78000000, 0x78001000 and 0x78002000.
  // IOVA 0x10000000: L0 idx [47:39]=0 → 0x40050000; L1 idx [38:30]=0 → 0x78000000;
  // L2 idx [29:21]=0x80 → 0x78001000 + 0x400 = 0x78001400; L3 idx [20:12]=0 → 0x78002000.
  it("--at-step 21 (after the mappings, before the first DMA): each level's descriptor address and the PA", () => {
    const r = explainDma(s1, { sid: 8, iova: 0x10000000n, atStep: 21 });
    expect(r.outcome).toEqual({
      ok: true,
      pa: '0x40100000',
      ipa: null,
      tlbHit: false,
      razwi: false,
    });
    expect(r.reads.map((x) => [x.stage, x.level, x.pa, x.kind])).toEqual([
      [1, 0, '0x40050000', 'table'],
      [1, 1, '0x78000000', 'table'],
      [1, 2, '0x78001400', 'table'],
      [1, 3, '0x78002000', 'page'],
    ]);
    // the leaf: OA 0x40100000, AP[2:1]=0b01 (rw, unprivileged too), AF=1, nG=1 (a non-global mapping)
    expect(r.reads[3]!.note).toMatch(/page → 0x40100000; AP\[2:1\]=0b01 AF=1 nG=1/);
    expect(r.event).toBeNull();
    expect(formatExplain(r)).toContain('└─ OK → PA 0x40100000');
  });

  it('after the DMA of step 21 the IOTLB answers: "no walk", unless --cold', () => {
    const warm = explainDma(s1, { sid: 8, iova: 0x10000000n, atStep: 22 });
    expect(warm.reads).toEqual([]);
    expect(warm.outcome).toMatchObject({ ok: true, pa: '0x40100000', tlbHit: true });
    expect(top(warm, 'tlb')[0]!.text).toMatch(
      /^IOTLB hit: stage-1 entry for 0x10000000 .* no walk/,
    );
    const cold = explainDma(s1, { sid: 8, iova: 0x10000000n, atStep: 22, cold: true });
    expect(cold.reads).toHaveLength(4);
    expect(cold.outcome).toMatchObject({ ok: true, pa: '0x40100000', tlbHit: false });
    expect(top(cold, 'tlb')).toEqual([]);
  });

  it('--at-step 19 (before pt.map) faults at level 0; after the unmap and TLBI (all steps) it faults at level 3', () => {
    // the L0 table at 0x40050000 is still zero: descriptor 0, bit[0]=0 → stage-1 F_TRANSLATION, S2=0, CLASS=IN
    const before = explainDma(s1, { sid: 8, iova: 0x10000000n, atStep: 19 });
    expect(before.outcome).toMatchObject({
      ok: false,
      event: 'F_TRANSLATION',
      S2: 0,
      CLASS: 'IN',
      recorded: true,
    });
    expect(before.outcome).not.toHaveProperty('IPA');
    expect(before.reads).toEqual([
      expect.objectContaining({
        stage: 1,
        level: 0,
        pa: '0x40050000',
        kind: 'invalid',
        desc: '0x0000000000000000',
      }),
    ]);
    // step 29 cleared the L3 entry and step 31 invalidated the IOTLB: the walk reaches L3 and finds 0
    const after = explainDma(s1, { sid: 8, iova: 0x10000000n });
    expect(after.reads.map((x) => [x.level, x.kind])).toEqual([
      [0, 'table'],
      [1, 'table'],
      [2, 'table'],
      [3, 'invalid'],
    ]);
    expect(after.outcome).toMatchObject({ event: 'F_TRANSLATION', S2: 0, CLASS: 'IN' });
  });

  it('a write to the read-only 2MB block is a stage-1 permission fault with RnW=write', () => {
    // step 20: IOVA 0x10200000 → PA 0x40400000, a level-2 block, read-only (AP[2]=1)
    const r = explainDma(s1, { sid: 8, iova: 0x10234560n, access: 'write', atStep: 21 });
    expect(r.outcome).toMatchObject({ event: 'F_PERMISSION', S2: 0, CLASS: 'IN' });
    expect(r.reads.at(-1)).toMatchObject({ level: 2, kind: 'block' });
    expect(r.event?.decoded.fields).toMatchObject({ RnW: 0, InputAddr: '0x10234560' });
  });
});

describe('explain: under a hypervisor the hardware walks the shadow stream table', () => {
  it("pkvm-donate: the STE the hardware uses is the hypervisor's nested shadow, not the host's stage-1 STE", () => {
    const sc = loadScenario('pkvm-donate');
    // its first (only) variant is pkvm
    const hyp = explainDma(sc, { sid: 16, iova: 0xfffff000n, atStep: 4, cold: true });
    expect(hyp.hypMode).toBe('pkvm');
    const none = explainDma(sc, { sid: 16, iova: 0xfffff000n, atStep: 4, cold: true, hyp: 'none' });
    const steHyp = top(hyp, 'ste')[0]!.data!;
    const steNone = top(none, 'ste')[0]!.data!;
    // the host wrote Config=0b101 (stage 1 only); pKVM installs it nested in its idmap (0b111)
    expect(steNone['Config']).toBe(5);
    expect(steHyp['Config']).toBe(7);
    expect(steHyp['addr']).not.toBe(steNone['addr']);
    expect(top(hyp, 'smmu')[0]!.text).toContain("pkvm hypervisor's shadow stream table");
    // both reach the buffer the driver mapped (PA 0x41000000, step 2); under pkvm through the idmap
    expect(hyp.outcome).toMatchObject({ ok: true, pa: '0x41000000', ipa: '0x41000000' });
    expect(none.outcome).toMatchObject({ ok: true, pa: '0x41000000', ipa: null });
    expect(hyp.reads.some((x) => x.stage === 2 && x.for === 'in')).toBe(true);
  });

  it('defaults to the first variant (pkvm-v6-gaps: pkvm-v6)', () => {
    expect(
      explainDma(loadScenario('pkvm-v6-gaps'), { sid: 8, iova: 0x1000n, atStep: 2 }).hypMode,
    ).toBe('pkvm-v6');
  });

  it('a C_BAD_STREAMID says which L1STD is empty (host-2level, SID 0x7700)', () => {
    const r = explainDma(loadScenario('host-2level'), { sid: 0x7700, iova: 0x1000n });
    expect(r.outcome).toMatchObject({ ok: false, event: 'C_BAD_STREAMID' });
    // SPLIT=8: L1 index 0x7700 >> 8 = 0x77 = 119
    expect(formatExplain(r)).toMatch(
      /SID 30464: L1STD 119 at 0x[0-9a-f]+ = 0x0000000000000000 \(in memory now\): Span=0: no level-2 table/,
    );
  });

  it('bad input throws an error naming the argument', () => {
    expect(() => explainDma(s1, { sid: 8, iova: 0n, atStep: 35 })).toThrow(
      /^--at-step: 35 is outside 0\.\.34/,
    );
    expect(() => explainDma(s1, { sid: -1, iova: 0n })).toThrow(/^--sid/);
    expect(() => explainDma(s1, { sid: 8, iova: 1n << 64n })).toThrow(/^--iova/);
  });
});

describe('smmulab explain (CLI)', () => {
  let out = '';
  let err = '';
  const run = async (...args: string[]): Promise<number> => {
    out = '';
    err = '';
    const o = vi
      .spyOn(process.stdout, 'write')
      .mockImplementation((s) => ((out += String(s)), true));
    const e = vi
      .spyOn(process.stderr, 'write')
      .mockImplementation((s) => ((err += String(s)), true));
    try {
      return await main(args);
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  };
  afterEach(() => vi.restoreAllMocks());

  it('prints the tree, and --json one object', async () => {
    expect(await run('explain', 'bare-nested', '--sid', '10', '--iova', '0x10000000')).toBe(0);
    expect(out).toMatch(/^DMA sid 10 iova 0x10000000 read — bare-nested, after all 37 steps\n/);
    expect(out).toContain('FAULT F_TRANSLATION S2=1 CLASS=TT IPA=0xa0000000');
    expect(
      await run(
        'explain',
        'bare-s1',
        '--sid',
        '8',
        '--iova',
        '268435456',
        '--at-step',
        '21',
        '--json',
      ),
    ).toBe(0);
    const j = JSON.parse(out);
    expect(Object.keys(j)).toEqual([
      'scenario',
      'hypMode',
      'atStep',
      'totalSteps',
      'replay',
      'cold',
      'dma',
      'outcome',
      'event',
      'reads',
      'notes',
      'tree',
    ]);
    expect(j.dma).toEqual({
      sid: 8,
      ssid: null,
      iova: '0x10000000',
      access: 'read',
      priv: false,
      instr: false,
    });
    expect(j.outcome.pa).toBe('0x40100000');
    expect(j.tree.kind).toBe('dma');
    expect(j.tree.children.map((n: ExplainNode) => n.kind)).toEqual([
      'smmu',
      'ste',
      'cd',
      's1',
      'result',
    ]);
  });

  it('bad input exits 2 with a message naming the argument', async () => {
    expect(await run('explain', 'no-such-scenario', '--sid', '1', '--iova', '0')).toBe(2);
    expect(err).toContain('no-such-scenario');
    expect(await run('explain', 'bare-s1', '--sid', 'nine', '--iova', '0')).toBe(2);
    expect(err).toContain('--sid: "nine" is not a number');
    expect(await run('explain', 'bare-s1', '--sid', '8', '--iova', '0x12g4')).toBe(2);
    expect(err).toContain('--iova: "0x12g4" is not a number');
    expect(await run('explain', 'bare-s1', '--sid', '8', '--iova', '0', '--at-step', '99')).toBe(2);
    expect(err).toContain('--at-step: 99 is outside 0..34');
    expect(await run('explain', 'bare-s1', '--iova', '0')).toBe(2);
    expect(err).toContain('sid');
    expect(out).toBe('');
    expect(await run('explain', 'pkvm-attacks', '--sid', '8', '--iova', '0')).toBe(2);
    expect(err).toContain('catalog');
  });
});
