/**
 * `smmulab decode` and `smmulab encode`, run as a user would (through the CLI's main(), in this
 * process: test/scenarios/cli/in-process.ts).
 * Encodings are worked out from /work/shared/reference/smmuv3.md or copied from the words Linux
 * issued (linux-sequence.md §3).
 */
import { describe, expect, it } from 'vitest';
import { smmulab } from './in-process.ts';

describe('smmulab decode', () => {
  it("cmd: Linux's CMD_SYNC 0x0fc02046 shows CS=SIG_SEV, MSH=ISH, MSIAttr=0xF, grouped by DW", async () => {
    const r = await smmulab('decode', 'cmd', '0x000000000fc02046', '0x0000000000000000');
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('CMD_SYNC (opcode 0x46): complete all earlier commands, then signal');
    expect(lines[1]).toBe('DW0 0x000000000fc02046');
    // CS=2<<12, MSH=3<<22, MSIAttr=0xf<<24 (reference §4.2)
    expect(r.stdout).toMatch(/^ {2}\[13:12\] +CS=0b10 \(SIG_SEV\)$/m);
    expect(r.stdout).toMatch(/^ {2}\[23:22\] +MSH=0b11 \(Inner Shareable\)$/m);
    expect(r.stdout).toMatch(/^ {2}\[27:24\] +MSIAttr=15/m);
    expect(lines.indexOf('DW1 0x0000000000000000')).toBeGreaterThan(
      lines.findIndex((l) => l.includes('MSIData')),
    );
    expect(r.stdout).toMatch(/^assumed: smmulab default SMMU: SMMUv3\.2 /m);
  });

  it('ste: Config=0b101 (S1 translate, S2 bypass); missing DWs are said to be 0; --features makes it ILLEGAL', async () => {
    // Linux's STE for SID 8: DW0 0x4806c00b (V=1, Config=5, S1ContextPtr=0x4806c000), DW1 0xd6
    const r = await smmulab('decode', 'ste', '4806c00b', '0xd6');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Config=0b101 (S1 translate, S2 bypass)');
    expect(r.stdout).toContain('S1ContextPtr=0x4806c000');
    expect(r.stdout).toContain('note: DW2..DW7 not given, taken as 0');
    expect(r.stdout).not.toContain('ILLEGAL');
    // V=1, Config=5, S1Fmt=1, S1CDMax=4, ptr 0x40000000: a 2-level CD table needs IDR0.CD2L (§2.4)
    const bad = await smmulab('decode', 'ste', '0x200000004000001b', '--features', 'cd2l=0');
    expect(bad.status).toBe(0);
    expect(bad.stdout).toContain('ILLEGAL: C_BAD_STE: S1Fmt=1 (2-level CD table) but IDR0.CD2L=0');
    expect(bad.stdout).toContain('assumed: smmulab default SMMU with cd2l=false');
  });

  it('--json prints {kind, name, words, fields:[{name, dw, hi, lo, value, meaning}], illegal}', async () => {
    const r = await smmulab('decode', 'cmd', '0x0001000000000012', '0x00000000ffffd701', '--json');
    expect(r.status).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d).toMatchObject({
      kind: 'cmd',
      name: 'TLBI_NH_VA',
      words: ['0x0001000000000012', '0x00000000ffffd701'],
      illegal: [],
      reserved: [],
    });
    // Linux capture: asid=1, TG=1 (4K), TTL=3, Leaf=1, Address 0xffffd000
    const by = Object.fromEntries(d.fields.map((f: { name: string }) => [f.name, f]));
    expect(by.ASID).toMatchObject({ dw: 0, hi: 63, lo: 48, bits: 'DW0[63:48]', value: '0x1' });
    expect(by.TG).toMatchObject({ dw: 1, hi: 11, lo: 10, value: '0x1', meaning: '4KB' });
    expect(by.Address).toMatchObject({
      dw: 1,
      hi: 63,
      lo: 12,
      value: '0xffffd',
      address: '0xffffd000',
    });
    expect(d.notes).toContain(
      'range: (NUM+1) x 2^SCALE = 1 x 4KB = 4KB, addresses 0xffffd000..0xffffdfff',
    );
  });

  it('event, l1std, a reserved opcode; --u32 and --bytes give the same result as double-words', async () => {
    // F_TRANSLATION SID 8, DW1 PnU|RnW|S2|CLASS=IN, DW3 IPA 0x40005000 (§5.2)
    const e = await smmulab(
      'decode',
      'event',
      '0x0000000800000010',
      '0x0000028a00000000',
      '0xffffd123',
      '0x40005000',
      '--nonzero',
    );
    expect(e.status).toBe(0);
    expect(e.stdout.split('\n')[0]).toBe('F_TRANSLATION (event 0x10)');
    expect(e.stdout).toContain('CLASS=0b10 (IN)');
    expect(e.stdout).toContain('IPA=0x40005000');
    const l = await smmulab('decode', 'l1std', '0x7aa60009');
    expect(l.stdout).toContain('Span=9 (L2 table of 2^(Span-1) = 256 STEs (16KB))');
    const op = await smmulab('decode', 'cmd', '0x99', '0');
    expect(op.status).toBe(0);
    expect(op.stdout).toContain('ILLEGAL: CERROR_ILL: opcode 0x99 is reserved');
    // the same CMD_SYNC as 32-bit words (low first) and as bytes in memory order
    const dw = await smmulab('decode', 'cmd', '0x0fc02046', '0', '--json');
    const u32 = await smmulab('decode', 'cmd', '--u32', '0x0fc02046', '0', '0', '0', '--json');
    const bytes = await smmulab(
      'decode',
      'cmd',
      '--bytes',
      '4620c00f000000000000000000000000',
      '--json',
    );
    expect(JSON.parse(u32.stdout)).toEqual(JSON.parse(dw.stdout));
    expect(JSON.parse(bytes.stdout)).toEqual(JSON.parse(dw.stdout));
  });

  it('bad input exits 2 and names the bad token or count', async () => {
    const hex = await smmulab('decode', 'cmd', '0x46', '0xzz');
    expect(hex.status).toBe(2);
    expect(hex.stderr).toContain('smmulab decode: "0xzz" (value 2) is not hex');
    expect(hex.stdout).toBe('');
    const count = await smmulab('decode', 'cmd', '0x46');
    expect(count.status).toBe(2);
    expect(count.stderr).toContain('a cmd is 2 double-words (DW0 DW1); got 1');
    const wide = await smmulab('decode', 'l1std', '0x10000000000000000');
    expect(wide.status).toBe(2);
    expect(wide.stderr).toContain('"0x10000000000000000" (value 1) has more than 16 hex digits');
    const ste9 = await smmulab('decode', 'ste', '1', '2', '3', '4', '5', '6', '7', '8', '9');
    expect(ste9.status).toBe(2);
    expect(ste9.stderr).toContain('a ste is 1 to 8 double-words');
    const kind = await smmulab('decode', 'pte', '0x1');
    expect(kind.status).toBe(2);
    expect(kind.stderr).toContain('Given: "pte"');
    expect(kind.stdout).toBe('');
    const feat = await smmulab('decode', 'ste', '0x1', '--features', 'pri=yes');
    expect(feat.status).toBe(2);
    expect(feat.stderr).toContain('feature pri: "yes" is not 0/1/true/false');
  });
});

describe('smmulab encode', () => {
  it('encode cmd TLBI_NH_VA --asid 3 --vmid 0 --addr 0x1000 --leaf prints the DWs, and decode reads them back', async () => {
    const r = await smmulab(
      'encode',
      'cmd',
      'TLBI_NH_VA',
      '--asid',
      '3',
      '--vmid',
      '0',
      '--addr',
      '0x1000',
      '--leaf',
    );
    expect(r.status).toBe(0);
    // DW0 = 0x12 | ASID 3<<48; DW1 = Address 0x1000 | Leaf
    expect(r.stdout).toBe('0x0003000000000012 0x0000000000001001\n');
    const back = await smmulab('decode', 'cmd', ...r.stdout.trim().split(' '), '--json');
    const by = Object.fromEntries(
      JSON.parse(back.stdout).fields.map((f: { name: string; value: string }) => [f.name, f.value]),
    );
    expect(by).toMatchObject({
      Opcode: '0x12',
      ASID: '0x3',
      VMID: '0x0',
      Leaf: '0x1',
      Address: '0x1',
    });
  });

  it("encode ste / cd / cmd reproduce Linux's words; 64-bit addresses keep every bit", async () => {
    const ste = await smmulab(
      'encode',
      'ste',
      '--v',
      '1',
      '--config',
      '5',
      '--s1contextptr',
      '0x4806c000',
      '--s1dss',
      '2',
      '--s1cir',
      '1',
      '--s1cor',
      '1',
      '--s1csh',
      '3',
    );
    expect(ste.status).toBe(0);
    expect(ste.stdout.trim().split(' ')).toEqual([
      '0x000000004806c00b',
      '0x00000000000000d6',
      ...new Array(6).fill('0x0000000000000000'),
    ]);
    const sync = await smmulab(
      'encode',
      'cmd',
      'CMD_SYNC',
      '--cs',
      '2',
      '--msh',
      '3',
      '--msiattr',
      '0xf',
    );
    expect(sync.stdout).toBe('0x000000000fc02046 0x0000000000000000\n');
    // a VA with bit 63 set survives (yargs would otherwise round it through a double)
    const va = await smmulab(
      'encode',
      'cmd',
      'TLBI_EL2_VA',
      '--asid',
      '5',
      '--addr',
      '0xffff800000001000',
      '--leaf',
      '1',
    );
    expect(va.stdout).toBe('0x0005000000000022 0xffff800000001001\n');
    const j = await smmulab('encode', 'cd', '--v', '1', '--asid', '0x1', '--json');
    expect(JSON.parse(j.stdout)).toMatchObject({
      kind: 'cd',
      words: ['0x0001000080000000', ...new Array(7).fill('0x0000000000000000')],
    });
  });

  it('bad fields, values and names exit 2 with a message naming them', async () => {
    const wide = await smmulab('encode', 'ste', '--config', '9');
    expect(wide.status).toBe(2);
    expect(wide.stderr).toContain(
      'STE field Config (DW0[3:1], 3 bits): 0x9 does not fit (largest 0x7)',
    );
    const unknown = await smmulab('encode', 'cmd', 'TLBI_NH_VA', '--bogus', '1');
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain(
      'CMD_TLBI_NH_VA has no field "bogus" (fields: NUM, SCALE, VMID, ASID, Leaf, TTL128, TTL, TG, Address)',
    );
    const align = await smmulab('encode', 'ste', '--s1contextptr', '0x40001001');
    expect(align.status).toBe(2);
    expect(align.stderr).toContain('address 0x40001001 is not 64-byte aligned');
    const badhex = await smmulab('encode', 'cmd', 'CFGI_STE', '--sid', '0xg');
    expect(badhex.status).toBe(2);
    expect(badhex.stderr).toContain('"0xg" is not a number');
    const op = await smmulab('encode', 'cmd', 'TLBI_FOO');
    expect(op.status).toBe(2);
    expect(op.stderr).toContain('unknown command "TLBI_FOO"');
    expect(
      (await smmulab('encode', 'cmd', 'CFGI_STE', '--sid', '1', '--sid', '2')).stderr,
    ).toContain('--sid given 2 times');
  });

  it('--help documents the conventions', async () => {
    const d = await smmulab('decode', '--help');
    expect(d.status).toBe(0);
    expect(d.stdout).toContain('64-bit double-words, DW0 first');
    const e = await smmulab('encode', '--help');
    expect(e.status).toBe(0);
    expect(e.stdout).toContain('Address fields take the BYTE address');
  });
});
