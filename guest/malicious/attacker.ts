/**
 * The malicious guest: it holds a guest's full power and uses it against the hypervisor's
 * vSMMU (designs.md §3, attacks X1–X10 of §7.2). Each call to `next()` returns one hostile
 * operation, or a short sequence of them (a template from the attack catalog, every value from
 * the grammar in host/malicious/grammar.ts, which this file reuses with the guest's layout):
 *
 *  - MMIO reads and writes of any size and offset to its vSMMU (IPA 0x0905_0000), and
 *    anywhere else in its IPA space (a data abort outside its RAM);
 *  - memory writes to its own RAM (IPAs): command-queue slots, STEs, L1 descriptors, CDs,
 *    stage-1 page tables, or anything;
 *  - commands of every opcode at its CMDQ_PROD, biased to boundary values: vSIDs it owns and
 *    vSIDs it does not (another guest's, the host's pSIDs, its own pSIDs, the StreamID
 *    limits), Range 31 and others, VMIDs, Leaf, CS values, PROD jumps and wraps, huge queue
 *    sizes and floods of valid commands (X5, X6);
 *  - DMA from its devices (by pSID, the device behind a vSID), plain, through the ATC, or as
 *    ATS Translated requests;
 *  - races: a second vCPU rewriting guest memory between two hypervisor reads of it (only
 *    when the scenario `race` step takes a guest actor: `races` in the options).
 *
 * Operations are plain data with the shape of the scenario steps they replay as (write, read,
 * memwrite, cmd, dma, race), in their validated form (64-bit values as BigInt), so a shrunk
 * sequence is an ordinary scenario file. The attacker aims with what the guest can read: its
 * vSMMU registers and its own memory (`GuestProbe`), nothing else. Given the same seed and the
 * same machine it generates the same operations.
 */
import { regByName, CR0_BITS, OFF, type RegName } from '../../hw/smmu/regs.ts';
import { CFG, STE } from '../../hw/smmu/ste.ts';
import { get, set } from '../../hw/bits.ts';
import * as grammar from '../../host/malicious/grammar.ts';
import {
  Rng,
  type AccessSize,
  type CpuOp,
  type DmaOp,
  type HostLayout,
  type CmdSpec,
} from '../../host/malicious/grammar.ts';
import { OPCODES } from '../../hw/smmu/commands.ts';

const { SMMUEN, EVENTQEN, CMDQEN } = CR0_BITS;
/** SMMUEN, EVENTQEN and CMDQEN: the vSMMU on with its queues */
const CR0_QUEUES_ON = BigInt(SMMUEN | EVENTQEN | CMDQEN);

export { Rng, type CmdSpec } from '../../host/malicious/grammar.ts';

export type Size = AccessSize;

/** One hostile guest operation: a scenario step in its validated form. */
export type GuestOp =
  | CpuOp<string>
  | DmaOp
  | { op: 'race'; actor: string; addr: number; hex: string; afterReads: number; comment?: string };

export type GuestOpKind = GuestOp['op'];

/** What a guest can read now: its vSMMU registers and its own memory (no side effects). */
export interface GuestProbe {
  /** a vSMMU register as the guest would read it */
  reg(name: RegName): bigint;
  /** 8 bytes of the guest's memory at an IPA, or null outside its RAM */
  mem64(ipa: number): bigint | null;
}

/** One guest as its attacker knows it. */
export interface GuestView {
  /** bus actor, guest:<name> */
  actor: string;
  /**
   * Its layout in its own terms (IPAs), in the grammar's shape: `ram` its RAM, `smmu` its
   * vSMMU, `scratch` the RAM it keeps hostile structures in, `sids` its vSIDs, `mappings` its
   * DMA mappings (sid = vSID, pa = IPA), `structures` its driver's queues and tables, `hyp`
   * the memory it would most like to reach (PAs outside its RAM, for addresses an IPA→PA
   * confusion would use).
   */
  L: HostLayout;
  /** its devices: vSID → pSID (the pSID is what a DMA names) */
  devices: ReadonlyArray<{ vsid: number; psid: number }>;
  /** StreamIDs it does not own but may aim at: other guests' vSIDs, the host's pSIDs, its own pSIDs */
  foreign: readonly number[];
  probe: GuestProbe;
  /** the vSMMU was left at reset (its kernel did not probe): bring-up templates are likelier */
  raw: boolean;
}

export interface GuestAttackerOptions {
  /** the `race` step takes a guest actor (a second vCPU) */
  races: boolean;
}

/** IPA windows outside the guest's RAM and vSMMU: the physical SMMU's page 1, the GIC, nothing */
const ELSEWHERE = [0x0800_0000, 0x0906_0000, 0x0907_0000, 0x0a00_0000, 0x0000_1000];
/** offsets in the vSMMU page that are not the drawn register's (registerWrite) */
const ODD_OFFSETS = [OFF.STATUSR, OFF.AGBPA, OFF.GATOS_CTRL];
const elsewhereWrite = (r: Rng, L: HostLayout): number =>
  r.chance(0.5) ? r.pick(ELSEWHERE) + r.int(0x100) * 4 : grammar.targetAddress(r, L, 4);
const elsewhereRead = (r: Rng): number => r.pick(ELSEWHERE);
/** a guest kernel's CMD_SYNCs: no signal or SEV */
const CS_ANY = (r: Rng): number => r.pick([0, 2]);

export class GuestAttacker {
  private readonly table: ReadonlyArray<readonly [number, () => GuestOp[]]>;
  private readonly weights: number[];
  private readonly total: number;
  /** the guest acting in the current iteration */
  private g!: GuestView;

  constructor(
    private readonly r: Rng,
    private readonly guests: readonly GuestView[],
    o: GuestAttackerOptions,
  ) {
    const raw = guests.some((g) => g.raw);
    this.table = [
      [12, () => [this.mmioWrite()]],
      [4, () => [this.mmioRead()]],
      [14, () => this.commands()],
      ...grammar.structureAttacks<GuestOp>(this),
      [10, () => [this.dma()]],
      [3, () => this.flood()],
      [3, () => this.eventqGames()],
      [2, () => this.tlbiStorm()],
      [raw ? 8 : 2, () => this.bringUp()],
      [2, () => this.cr0Dance()],
      [2, () => this.doubleS1()],
      [2, () => this.cdEdit()],
      [2, () => this.strtabMove()],
      [3, () => this.foreignStream()],
      [o.races ? 3 : 0, () => this.race()],
    ];
    this.weights = this.table.map(([w]) => w);
    this.total = this.weights.reduce((a, b) => a + b, 0);
  }

  /** The next hostile operation(s), from one guest. */
  next(): GuestOp[] {
    this.g =
      this.guests.length === 1
        ? this.guests[0]!
        : this.guests[
            this.r.weighted<number>([
              [7, 0],
              [3, 1],
            ]) % this.guests.length
          ]!;
    const ops = [
      ...this.heal(),
      ...this.table[this.r.index(this.weights, this.total)]![1](),
    ].filter(stepable);
    return ops.length ? ops : [this.mmioRead()];
  }

  /**
   * What a guest kernel does to keep its SMMU usable, most of the time: on a command error,
   * replace the command at CONS with a CMD_SYNC (Linux's arm_smmu_cmdq_skip_err) and
   * acknowledge it; re-enable what is off.
   */
  private heal(): GuestOp[] {
    const r = this.r;
    const out: GuestOp[] = [];
    const g = this.reg('GERROR');
    const n = this.reg('GERRORN');
    if (((g ^ n) & 1n) !== 0n && r.chance(0.7)) {
      const q = this.queue();
      const cons = Number(this.reg('CMDQ_CONS')) & (2 ** (q.qs + 1) - 1);
      out.push({
        op: 'memwrite',
        actor: this.actor,
        addr: this.slot(q, cons),
        hex: grammar.wordsToHex(grammar.encodeSpec({ name: 'CMD_SYNC', CS: 0 })),
        comment: 'the guest kernel skips the command at CONS (a CMD_SYNC in its place)',
      });
      out.push(this.regWrite('GERRORN', g));
    }
    const cr0 = this.reg('CR0');
    if ((cr0 & CR0_QUEUES_ON) !== CR0_QUEUES_ON && r.chance(0.15))
      out.push(this.regWrite('CR0', cr0 | CR0_QUEUES_ON));
    return out;
  }

  // ---- the acting guest's view -----------------------------------------------------------

  private get L(): HostLayout {
    return this.g.L;
  }

  private get actor(): string {
    return this.g.actor;
  }

  private reg(name: RegName): bigint {
    return this.g.probe.reg(name);
  }

  private cur = (name: string): bigint | null => {
    const reg = regByName(name);
    return reg ? this.g.probe.reg(reg.name as RegName) : null;
  };

  private regWrite(name: RegName, value: bigint, size?: Size): GuestOp {
    const reg = regByName(name)!;
    const sz = size ?? reg.width;
    return {
      op: 'write',
      actor: this.actor,
      addr: this.L.smmu + reg.offset,
      size: sz,
      value: BigInt.asUintN(sz * 8, value),
    };
  }

  /** a vSID: its own mostly, else one it does not own, or a StreamID limit */
  private pickVsid(): number {
    const r = this.r;
    return r.weighted<number>([
      [14, r.pick(this.L.sids)],
      [4, this.g.foreign.length ? r.pick(this.g.foreign) : 1],
      [1, r.pick([0, 1, 255, 256, 0xffff, r.bits(16)])],
    ]);
  }

  /** a command of `name` (or any opcode), with StreamIDs aimed by pickVsid */
  private command(name?: string): CmdSpec {
    const r = this.r;
    const c = grammar.commandOf(r, this.L, name ? grammar.opcodeDef(name) : r.pick(OPCODES));
    if ('StreamID' in c && r.chance(0.7)) c.StreamID = this.pickVsid();
    return c;
  }

  private readonly sync = (): CmdSpec => grammar.syncCommand(this.r, this.L, CS_ANY);

  private readonly anyCmd = (): CmdSpec => this.command();

  // ---- registers ---------------------------------------------------------------------------

  mmioWrite(): GuestOp {
    const w = grammar.registerWrite(this.r, this.L, this.cur, ODD_OFFSETS, elsewhereWrite);
    return { op: 'write', actor: this.actor, addr: w.addr, size: w.size, value: w.value };
  }

  mmioRead(): GuestOp {
    const a = grammar.registerRead(this.r, this.L, elsewhereRead);
    return { op: 'read', actor: this.actor, addr: a.addr, size: a.size };
  }

  // ---- the command queue -------------------------------------------------------------------

  /** The guest's command queue as it programmed it: base (IPA), size and PROD. */
  private queue(): { base: number; qs: number; prod: number } {
    return grammar.queueOf(this.reg('CMDQ_BASE'), this.reg('CMDQ_PROD'), 19);
  }

  private slot(q: { base: number; qs: number }, prod: number): number {
    return q.base - (q.base % (2 ** q.qs * 16)) + (prod & (2 ** q.qs - 1)) * 16;
  }

  /** whether [ipa, ipa+len) is the guest's RAM (the cmd step writes there through the bus) */
  private inRam(ipa: number, len: number): boolean {
    return ipa >= this.L.ram.base && ipa + len <= this.L.ram.base + this.L.ram.size;
  }

  /** Commands written at PROD and one PROD write: the cmd step, or raw writes when the queue is not in RAM. */
  private submit(cmds: CmdSpec[], comment?: string): GuestOp[] {
    const q = this.queue();
    const n = cmds.length;
    const contiguous = (q.prod & (2 ** q.qs - 1)) + n <= 2 ** q.qs;
    if (contiguous && this.inRam(this.slot(q, q.prod), n * 16))
      return [{ op: 'cmd', actor: this.actor, commands: cmds, ...(comment ? { comment } : {}) }];
    const ops: GuestOp[] = [];
    let p = q.prod;
    for (const c of cmds) {
      ops.push({
        op: 'memwrite',
        actor: this.actor,
        addr: this.slot(q, p),
        hex: grammar.wordsToHex(grammar.encodeSpec(c)),
        comment: `${c.name} at the guest's CMDQ_PROD slot`,
      });
      p = (p + 1) & (2 ** (q.qs + 1) - 1);
    }
    ops.push(this.regWrite('CMDQ_PROD', BigInt(p)));
    return ops;
  }

  commands(): GuestOp[] {
    return this.submit(grammar.commandBatch(this.r, this.anyCmd, this.sync));
  }

  /** Raw command bytes (any opcode, reserved ones included) at PROD, then a PROD write (a step or a jump). */
  rawCommand(): GuestOp[] {
    const q = this.queue();
    const raw = grammar.rawAtProd(this.r, q);
    return [
      {
        op: 'memwrite',
        actor: this.actor,
        addr: this.slot(q, q.prod),
        hex: raw.hex,
        comment: 'a raw command at the guest CMDQ_PROD slot',
      },
      this.regWrite('CMDQ_PROD', BigInt(raw.prod)),
    ];
  }

  /** Commands written into queue slots without moving PROD. */
  queueEntryWrite(): GuestOp {
    const q = this.queue();
    const e = grammar.entryAhead(this.r, q, this.anyCmd);
    return { op: 'memwrite', actor: this.actor, addr: this.slot(q, e.index), hex: e.hex };
  }

  /** [X5] many valid commands written ahead of PROD, then one PROD jump over all of them. */
  flood(): GuestOp[] {
    const r = this.r;
    const q = this.queue();
    const n = r.weighted<number>([
      [3, r.range(20, 200)],
      [2, r.range(257, 512)],
      [4, r.range(600, 1500)],
      [1, r.range(2000, 4000)],
    ]);
    // mostly commands the vSMMU takes (a flood of illegal ones stops at the first)
    const cmd = r.weighted<CmdSpec>([
      [2, { name: 'PREFETCH_CONFIG', StreamID: r.pick(this.L.sids) }],
      [2, { name: 'TLBI_NH_ASID', ASID: this.L.asids[0] ?? 1 }],
      [
        1,
        {
          name: 'TLBI_NH_VA',
          ASID: this.L.asids[0] ?? 1,
          Address: grammar.hex(this.L.mappings[0]?.iova ?? 0x1000),
          Leaf: 1,
        },
      ],
      [1, { name: 'CFGI_CD', StreamID: r.pick(this.L.sids), SubstreamID: 0, Leaf: 1 }],
      [1, { name: 'CMD_SYNC', CS: 0 }],
      [1, this.command()],
    ]);
    const one = grammar.wordsToHex(grammar.encodeSpec(cmd));
    const ops: GuestOp[] = [];
    if (r.chance(0.5)) {
      // a queue of its own, from scratch: every value fixed, whatever came before
      const base = this.L.scratch.base + 0x10000;
      ops.push(
        this.regWrite('CR0', BigInt(SMMUEN | EVENTQEN)),
        this.regWrite('CMDQ_BASE', (1n << 62n) | BigInt(base) | 12n),
        this.regWrite('CMDQ_PROD', 0n),
        this.regWrite('CMDQ_CONS', 0n),
      );
      for (let at = 0; at < Math.min(n, 4096); at += 256) {
        const run = Math.min(256, n - at);
        ops.push({
          op: 'memwrite',
          actor: this.actor,
          addr: base + at * 16,
          hex: one.repeat(run),
          comment: `${run} × ${cmd.name} in the guest's command queue`,
        });
      }
      ops.push(
        this.regWrite('CR0', CR0_QUEUES_ON),
        this.regWrite('CMDQ_PROD', BigInt(Math.min(n, 4096))),
      );
      if (r.chance(0.5))
        ops.push({
          op: 'read',
          actor: this.actor,
          addr: this.L.smmu + OFF.CMDQ_CONS,
          size: 4,
          comment: 'the guest polls CONS (its next trap continues the batch)',
        });
      return ops;
    }
    const size = 2 ** q.qs;
    // the slots from PROD on, in runs that do not wrap (a memwrite per run)
    let p = q.prod;
    let left = Math.min(n, size);
    while (left > 0) {
      const idx = p & (size - 1);
      const run = Math.min(left, size - idx, 256);
      ops.push({
        op: 'memwrite',
        actor: this.actor,
        addr: this.slot(q, p),
        hex: one.repeat(run),
        comment: `${run} × ${cmd.name} in the guest's command queue`,
      });
      p = (p + run) & (2 * size - 1);
      left -= run;
    }
    ops.push(this.regWrite('CMDQ_PROD', BigInt(r.chance(0.9) ? p : grammar.prodStep(r, q.prod))));
    if (r.chance(0.5))
      ops.push({
        op: 'read',
        actor: this.actor,
        addr: this.L.smmu + OFF.CMDQ_CONS,
        size: 4,
        comment: 'the guest polls CONS (its next trap continues the batch)',
      });
    return ops;
  }

  /** [X6] a storm of TLBIs of every kind, VMIDs and ranges from the grammar. */
  tlbiStorm(): GuestOp[] {
    const r = this.r;
    const names = [
      'TLBI_NH_ALL',
      'TLBI_NH_ASID',
      'TLBI_NH_VA',
      'TLBI_NH_VAA',
      'TLBI_NSNH_ALL',
      'TLBI_S12_VMALL',
      'TLBI_S2_IPA',
      'TLBI_EL2_ALL',
    ];
    const cmds: CmdSpec[] = [];
    for (let i = r.range(4, 24); i > 0; i--) cmds.push(this.command(r.pick(names)));
    cmds.push(this.sync());
    return this.submit(cmds, 'a TLBI storm');
  }

  // ---- structures --------------------------------------------------------------------------

  /** The guest STE address of `vsid` as its own stream table says (null when it has none). */
  steAddr(vsid: number): number | null {
    return grammar.steAddress(
      this.reg('STRTAB_BASE'),
      this.reg('STRTAB_BASE_CFG'),
      vsid,
      this.g.probe,
    );
  }

  private l1Addr(vsid: number): number | null {
    return grammar.l1Address(this.reg('STRTAB_BASE'), this.reg('STRTAB_BASE_CFG'), vsid);
  }

  private cfgi(vsid: number): GuestOp[] {
    const leaf = this.r.chance(0.9) ? 1 : 0;
    return this.submit([{ name: 'CFGI_STE', StreamID: vsid, Leaf: leaf }, this.sync()]);
  }

  /** [X1, X3, X4] a crafted STE for a vSID (its own or not), CFGI_STE + CMD_SYNC, and (often) a DMA from its device. */
  steAndCfgi(): GuestOp[] {
    const r = this.r;
    const vsid = this.pickVsid();
    const at = this.steAddr(vsid) ?? grammar.targetAddress(r, this.L, 64);
    const w = grammar.steWords(r, this.L);
    const ops: GuestOp[] = [
      {
        op: 'memwrite',
        actor: this.actor,
        addr: at,
        hex: grammar.wordsToHex(w),
        comment: `guest STE for vSID ${vsid} (${grammar.steSummary(w)})`,
      },
    ];
    if (r.chance(0.85)) ops.push(...this.cfgi(vsid));
    if (r.chance(0.6)) ops.push(this.dmaFrom(this.psidFor(vsid)));
    return ops;
  }

  /** A CD (into the guest's CD tables, or anywhere), then CFGI_CD / CFGI_CD_ALL. */
  cdWrite(): GuestOp[] {
    const r = this.r;
    const at = grammar.cdAddress(r, this.L, 0.6);
    const ops: GuestOp[] = [
      {
        op: 'memwrite',
        actor: this.actor,
        addr: at,
        hex: grammar.wordsToHex(grammar.cdWords(r, this.L)),
        comment: 'a CD',
      },
    ];
    if (r.chance(0.7)) {
      const vsid = this.pickVsid();
      ops.push(
        ...this.submit([
          r.chance(0.5)
            ? { name: 'CFGI_CD', StreamID: vsid, SubstreamID: r.pick([0, 0, 1, 3]), Leaf: 1 }
            : { name: 'CFGI_CD_ALL', StreamID: vsid },
          this.sync(),
        ]),
      );
    }
    if (r.chance(0.5)) ops.push(this.dma());
    return ops;
  }

  /** One stage-1 translation-table descriptor in the guest's tables (or anywhere it can write). */
  ptWrite(): GuestOp {
    const at = grammar.descriptorAddress(this.r, this.L, 0.6);
    return {
      op: 'memwrite',
      actor: this.actor,
      addr: at,
      hex: grammar.u64ToHex(grammar.ptDescriptor(this.r, this.L)),
      comment: 'a stage-1 translation-table descriptor',
    };
  }

  /** [X4] re-point an L1 stream table descriptor (anywhere, outside its RAM first), then CFGI_STE in its span. */
  l1Write(): GuestOp[] {
    const r = this.r;
    const vsid = this.pickVsid();
    const at = this.l1Addr(vsid) ?? grammar.targetAddress(r, this.L, 8);
    const ops: GuestOp[] = [
      {
        op: 'memwrite',
        actor: this.actor,
        addr: at,
        hex: grammar.wordsToHex(grammar.l1Words(r, this.L)),
        comment: `L1 descriptor for vSID ${vsid}`,
      },
    ];
    if (r.chance(0.8)) ops.push(...this.cfgi(vsid));
    return ops;
  }

  randomMemWrite(): GuestOp {
    const hx = grammar.randomBytesHex(this.r);
    return {
      op: 'memwrite',
      actor: this.actor,
      addr: grammar.targetAddress(this.r, this.L),
      hex: hx,
    };
  }

  // ---- DMA ---------------------------------------------------------------------------------

  /** the pSID of a vSID the guest owns (a DMA is issued by the device), or one of its own when it names a foreign vSID */
  private psidFor(vsid: number): number {
    const d = this.g.devices.find((x) => x.vsid === vsid) ?? this.r.pick(this.g.devices);
    return d.psid;
  }

  private dmaFrom(psid: number, iova?: number): GuestOp {
    const vsid = this.g.devices.find((d) => d.psid === psid)?.vsid;
    const maps = this.L.mappings.filter((m) => m.sid === vsid);
    const a = iova ?? grammar.dmaAddress(this.r, this.L, maps, 5, 3);
    return grammar.dmaOf(this.r, psid, a, `the guest's device at vSID ${vsid} (pSID ${psid})`);
  }

  dma(): GuestOp {
    return this.dmaFrom(this.r.pick(this.g.devices).psid);
  }

  // ---- templates from the attack catalog ---------------------------------------------------

  /** [X7, X8] the event queue moved (outside RAM, huge, disabled), then a device fault to fill it. */
  eventqGames(): GuestOp[] {
    const r = this.r;
    const ops: GuestOp[] = [];
    const cr0 = Number(this.reg('CR0'));
    if (r.chance(0.7)) ops.push(this.regWrite('CR0', BigInt(cr0 & ~EVENTQEN)));
    if (r.chance(0.8))
      ops.push(
        this.regWrite(
          'EVENTQ_BASE',
          grammar.registerValue(r, this.L, regByName('EVENTQ_BASE')!, this.cur),
        ),
      );
    if (r.chance(0.3))
      ops.push(
        this.regWrite(
          'EVENTQ_PROD',
          BigInt((r.bits(20) | (r.chance(0.3) ? 0x8000_0000 : 0)) >>> 0),
        ),
      );
    if (r.chance(0.3))
      ops.push(
        this.regWrite('EVENTQ_CONS', BigInt(grammar.prodStep(r, Number(this.reg('EVENTQ_CONS'))))),
      );
    if (r.chance(0.7)) ops.push(this.regWrite('CR0', BigInt(cr0 | EVENTQEN)));
    for (let i = r.range(1, 4); i > 0; i--)
      ops.push(this.dmaFrom(r.pick(this.g.devices).psid, Math.floor(r.bits(40) / 4) * 4));
    return ops;
  }

  /** [7.1 #12–16 for a guest, X9] a bring-up from scratch: its own stream table and queues in its RAM (or not), then SMMUEN. */
  bringUp(): GuestOp[] {
    const r = this.r;
    const L = this.L;
    const at = (off: number): number => L.scratch.base + off;
    const l1 = r.chance(0.8) ? at(0) : grammar.targetAddress(r, L, 64);
    const l2 = r.chance(0.8) ? at(0x4000) : grammar.targetAddress(r, L, 64);
    const vsid = this.pickVsid();
    const twoLevel = r.chance(0.85);
    const split = r.chance(0.85) ? 8 : r.bits(5);
    const cfg = ((twoLevel ? 1 : 0) << 16) | (split << 6) | (r.chance(0.8) ? 16 : r.bits(6));
    const desc = new Uint32Array(2);
    desc[0] = (l2 | 9) >>> 0;
    desc[1] = Math.floor(l2 / 2 ** 32);
    const cmdq = r.chance(0.8) ? at(0x8000) : grammar.targetAddress(r, L, 32);
    const evtq = r.chance(0.6) ? at(0xa000) : grammar.targetAddress(r, L, 32);
    const ops: GuestOp[] = [];
    if (r.chance(0.6)) ops.push(this.regWrite('CR0', 0n));
    ops.push(
      this.regWrite('STRTAB_BASE', (1n << 62n) | BigInt(l1)),
      this.regWrite('STRTAB_BASE_CFG', BigInt(cfg >>> 0)),
      {
        op: 'memwrite',
        actor: this.actor,
        addr: l1 + Math.floor(vsid / 2 ** (twoLevel ? 8 : 0)) * (twoLevel ? 8 : 64),
        hex: twoLevel ? grammar.wordsToHex(desc) : grammar.wordsToHex(grammar.steWords(r, L)),
        comment: twoLevel ? `L1 descriptor for vSID ${vsid}` : `STE for vSID ${vsid}`,
      },
      {
        op: 'memwrite',
        actor: this.actor,
        addr: twoLevel ? l2 + (vsid % 256) * 64 : l1 + vsid * 64,
        hex: grammar.wordsToHex(grammar.steWords(r, L)),
        comment: `STE for vSID ${vsid}`,
      },
      this.regWrite(
        'CMDQ_BASE',
        (1n << 62n) | BigInt(cmdq) | BigInt(r.chance(0.8) ? 7 : r.bits(5)),
      ),
      this.regWrite('CMDQ_PROD', 0n),
      this.regWrite('CMDQ_CONS', 0n),
      this.regWrite(
        'EVENTQ_BASE',
        (1n << 62n) | BigInt(evtq) | BigInt(r.chance(0.8) ? 6 : r.bits(5)),
      ),
      this.regWrite('CR0', BigInt(CMDQEN | (r.chance(0.8) ? EVENTQEN : 0))),
      this.regWrite('CR0', BigInt(CMDQEN | SMMUEN | (r.chance(0.8) ? EVENTQEN : 0))),
      ...this.submit([
        { name: 'CFGI_STE', StreamID: vsid, Leaf: 1 },
        { name: 'CMD_SYNC', CS: 0 },
      ]),
      this.dmaFrom(this.psidFor(vsid)),
    );
    return ops;
  }

  /** CR0 and GBPA edges in odd orders (SMMUEN and GBPA.ABORT reconfigure every device). */
  cr0Dance(): GuestOp[] {
    const r = this.r;
    const ops: GuestOp[] = [];
    for (let i = r.range(2, 4); i > 0; i--) {
      ops.push(
        r.chance(0.7)
          ? this.regWrite('CR0', BigInt(r.bits(5)))
          : this.regWrite('GBPA', grammar.registerValue(r, this.L, regByName('GBPA')!, this.cur)),
      );
      if (r.chance(0.4)) ops.push(this.dma());
      if (r.chance(0.3)) ops.push(...this.commands());
    }
    return ops;
  }

  /** [X2] two stage-1 CFGI_STEs for the same vSID with no abort between, then DMA. */
  doubleS1(): GuestOp[] {
    const r = this.r;
    const d = r.pick(this.g.devices);
    const at = this.steAddr(d.vsid);
    if (at === null) return this.steAndCfgi();
    const ops: GuestOp[] = [];
    for (let i = 0; i < 2; i++) {
      const w = grammar.steWords(r, this.L);
      set(w, STE.V, 1);
      set(w, STE.Config, CFG.S1_TRANS);
      ops.push(
        {
          op: 'memwrite',
          actor: this.actor,
          addr: at,
          hex: grammar.wordsToHex(w),
          comment: `a stage-1 STE for vSID ${d.vsid} (${i ? 'again, no abort between' : 'first'})`,
        },
        ...this.cfgi(d.vsid),
      );
    }
    ops.push(this.dmaFrom(d.psid));
    return ops;
  }

  /** [X10] DMA through a mapping, rewrite its CD (TTB0 anywhere), CFGI_CD, DMA again. */
  cdEdit(): GuestOp[] {
    const r = this.r;
    const m = this.L.mappings.length ? r.pick(this.L.mappings) : null;
    const cd = this.L.structures.find((s) => s.what === `cd-${m?.sid}`);
    if (!m || !cd) return this.cdWrite();
    const psid = this.psidFor(m.sid);
    return [
      this.dmaFrom(psid, m.iova),
      {
        op: 'memwrite',
        actor: this.actor,
        addr: cd.base,
        hex: grammar.wordsToHex(grammar.cdWords(r, this.L)),
        comment: `the CD of vSID ${m.sid}, rewritten after attach`,
      },
      ...this.submit([
        r.chance(0.7)
          ? { name: 'CFGI_CD', StreamID: m.sid, SubstreamID: 0, Leaf: r.chance(0.8) ? 1 : 0 }
          : { name: 'CFGI_CD_ALL', StreamID: m.sid },
        this.sync(),
      ]),
      this.dmaFrom(psid, m.iova),
    ];
  }

  /**
   * [X3] configure a stream it does not own as if it did: an L2 table of its own for the vSID's
   * span (an L1 descriptor pointing at its scratch RAM), a bypass or stage-1 STE there, CFGI_STE.
   */
  foreignStream(): GuestOp[] {
    const r = this.r;
    const vsid = this.g.foreign.length ? r.pick(this.g.foreign) : r.bits(16);
    const base = Number(this.reg('STRTAB_BASE') & 0x00ff_ffff_ffff_ffc0n);
    const c = Number(this.reg('STRTAB_BASE_CFG'));
    const ste = grammar.steWords(r, this.L);
    set(ste, STE.V, 1);
    set(ste, STE.Config, r.chance(0.5) ? CFG.BYPASS : CFG.S1_TRANS);
    const ops: GuestOp[] = [];
    let at: number;
    if (((c >>> 16) & 3) === 1) {
      const split = (c >>> 6) & 0x1f;
      const l2 = this.L.scratch.base + 0x20000;
      const desc = new Uint32Array(2);
      desc[0] = (l2 | (split + 1)) >>> 0;
      ops.push({
        op: 'memwrite',
        actor: this.actor,
        addr: base + Math.floor(vsid / 2 ** split) * 8,
        hex: grammar.wordsToHex(desc),
        comment: `an L1 descriptor for vSID ${vsid}'s span, at an L2 table of its own`,
      });
      at = l2 + (vsid % 2 ** split) * 64;
    } else at = base + vsid * 64;
    ops.push({
      op: 'memwrite',
      actor: this.actor,
      addr: at,
      hex: grammar.wordsToHex(ste),
      comment: `a ${get(ste, STE.Config) === CFG.BYPASS ? 'bypass' : 'stage-1'} STE for vSID ${vsid}, which is not the guest's`,
    });
    ops.push(...this.cfgi(vsid));
    return ops;
  }

  /** [X9] STRTAB_BASE/CFG rewritten while SMMUEN=1 (the vSMMU ignores it), then CFGI_STE and DMA. */
  strtabMove(): GuestOp[] {
    const r = this.r;
    const d = r.pick(this.g.devices);
    return [
      this.regWrite(
        'STRTAB_BASE',
        grammar.registerValue(r, this.L, regByName('STRTAB_BASE')!, this.cur),
      ),
      this.regWrite(
        'STRTAB_BASE_CFG',
        grammar.registerValue(r, this.L, regByName('STRTAB_BASE_CFG')!, this.cur),
      ),
      ...this.cfgi(d.vsid),
      this.dmaFrom(d.psid),
    ];
  }

  /** A second vCPU rewrites guest memory right after the hypervisor's first read of it: a command slot, an STE or an L1 descriptor. */
  race(): GuestOp[] {
    const r = this.r;
    const afterReads = grammar.raceAfterReads(r);
    const kind = r.int(3);
    if (kind === 0) {
      const q = this.queue();
      const evil = this.command();
      return [
        {
          op: 'race',
          actor: this.actor,
          addr: this.slot(q, q.prod),
          hex: grammar.wordsToHex(grammar.encodeSpec(evil)),
          afterReads,
          comment: `a second vCPU rewrites the next command slot into ${evil.name}`,
        },
        ...this.submit([
          r.pick<CmdSpec>([
            { name: 'CMD_SYNC', CS: 0 },
            { name: 'CFGI_STE', StreamID: r.pick(this.L.sids), Leaf: 1 },
            { name: 'TLBI_NH_ASID', ASID: 1 },
          ]),
        ]),
      ];
    }
    const d = r.pick(this.g.devices);
    const at = kind === 1 ? this.steAddr(d.vsid) : this.l1Addr(d.vsid);
    if (at === null) return this.steAndCfgi();
    const evil = kind === 1 ? grammar.steWords(r, this.L) : grammar.l1Words(r, this.L);
    return [
      {
        op: 'race',
        actor: this.actor,
        addr: at,
        hex: grammar.wordsToHex(evil),
        afterReads,
        comment: `a second vCPU rewrites the ${kind === 1 ? 'STE' : 'L1 descriptor'} of vSID ${d.vsid} while the hypervisor reads it`,
      },
      ...this.cfgi(d.vsid),
      this.dmaFrom(d.psid),
    ];
  }
}

/** Whether a scenario step can hold the operation (addresses are exact JSON numbers, below 2^53). */
function stepable(op: GuestOp): boolean {
  return grammar.addressable(op);
}
