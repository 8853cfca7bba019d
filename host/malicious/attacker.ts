/**
 * The malicious host: it holds the host's full power and uses it against the hypervisor.
 * Each call to `next()` returns one hostile operation, or a short sequence of them (a
 * template drawn from the attack catalog, designs.md §7.1, with every value from the grammar):
 *
 *  - MMIO writes and reads of any register, size and offset, to the SMMU and elsewhere;
 *  - memory writes to what it owns: queue entries, STEs, L1 descriptors, CDs, page tables;
 *  - commands of every opcode, fields from the grammar (malicious-grammar.ts);
 *  - ownership calls: donate, reclaim, share, unshare, to the hypervisor or a guest;
 *  - DMA from every device, untranslated, through the ATC, or as ATS Translated requests;
 *  - races: a second host CPU that rewrites shared memory between two hypervisor reads of it.
 *
 * Operations are plain data with exactly the shape of the scenario steps they replay as
 * (scenarios/steps/: write, read, memwrite, cmd, hyp, dma, race), after validation (64-bit
 * values as BigInt), so a shrunk sequence is an ordinary scenario file. The attacker reads what
 * the host can read (its registers through the trap, its own memory) to aim, and nothing else;
 * given the same seed and the same machine it generates the same operations.
 */
import { CR0_BITS, OFF, regByName, type RegName } from '../../hw/smmu/regs.ts';
import { CFG, STE } from '../../hw/smmu/ste.ts';
import { set } from '../../hw/bits.ts';
import {
  Rng,
  targetAddress,
  registerValue,
  anyCommand,
  steWords,
  cdWords,
  l1Words,
  ptDescriptor,
  wordsToHex,
  u64ToHex,
  hex,
  encodeSpec,
  steAddress,
  l1Address,
  queueOf,
  registerWrite,
  registerRead,
  commandBatch,
  syncCommand,
  rawAtProd,
  entryAhead,
  randomBytesHex,
  cdAddress,
  descriptorAddress,
  steSummary,
  dmaAddress,
  dmaOf,
  raceAfterReads,
  addressable,
  structureAttacks,
  type AccessSize,
  type CpuOp,
  type DmaOp,
  type HostLayout,
  type CmdSpec,
} from './grammar.ts';

const { SMMUEN, EVENTQEN, CMDQEN, ATSCHK } = CR0_BITS;
/** SMMUEN, EVENTQEN and CMDQEN: the SMMU on with its queues */
const CR0_QUEUES_ON = BigInt(SMMUEN | EVENTQEN | CMDQEN);
/** SMMUEN and CMDQEN: commands are consumed */
const CR0_CMDQ_ON = BigInt(SMMUEN | CMDQEN);

export { Rng, encodeSpec, type HostLayout, type CmdSpec } from './grammar.ts';

export type Size = AccessSize;

/** One hostile operation: a scenario step in its validated form. */
export type HostileOp =
  | CpuOp<'host'>
  | {
      op: 'hyp';
      call: 'donate' | 'reclaim' | 'share' | 'unshare';
      addr: number;
      size: number;
      to: string;
      expect: 'ok' | 'refused';
      comment?: string;
    }
  | DmaOp
  | { op: 'race'; addr: number; hex: string; afterReads: number; comment?: string }
  | {
      op: 'guest';
      call: 'create';
      name: string;
      memory: { base: number; size: number };
      devices: Array<{ device: string; vsid: number }>;
      boot: boolean;
      expect: 'ok' | 'refused';
      comment?: string;
    }
  | {
      op: 'guest';
      call: 'destroy';
      name: string;
      dmaDuring?: { device: string; iova: number; access: 'read' | 'write' };
      expect: 'ok' | 'refused';
      comment?: string;
    }
  | GuestDriverOp;

/** What the (benign) kernel of a guest the host created does, as the driver step with the guest's actor. */
export type GuestDriverOp =
  | {
      op: 'driver';
      actor: `guest:${string}`;
      call: 'probe';
      pages: { base: number; limit: number };
      comment?: string;
    }
  | {
      op: 'driver';
      actor: `guest:${string}`;
      call: 'attach';
      sid: number;
      domain: 'dma';
      comment?: string;
    }
  | {
      op: 'driver';
      actor: `guest:${string}`;
      call: 'map';
      sid: number;
      pa: number;
      size: number;
      dir: 'bidirectional';
      as: string;
      comment?: string;
    }
  | {
      op: 'driver';
      actor: `guest:${string}`;
      call: 'dma';
      sid: number;
      mapping: string;
      access: 'read' | 'write';
      offset: number;
      comment?: string;
    };

export type HostileKind = HostileOp['op'];

/** What the host can read now: its SMMU registers (through the hypervisor's trap) and its own memory. */
export interface HostProbe {
  /** a host register read, or null when it aborts */
  reg(name: RegName): bigint | null;
  /** a host read of 8 bytes of memory, or null when it aborts */
  mem64(addr: number): bigint | null;
  /**
   * A guest the host created (the host knows what its own hypercalls returned): whether it
   * exists, whether it still runs (not mid-teardown), whether its kernel has probed its vSMMU, the devices (name, pSID) the host gave
   * it, and the IOVA of the guest's buffer once its kernel has mapped it.
   */
  guest(name: string): {
    devices: ReadonlyArray<{ device: string; psid: number }>;
    alive: boolean;
    probed: boolean;
    bufferIova: number | null;
  } | null;
}

const PAGE = 4096;
/** the devices a guest may be given (8 and 256 are the host driver's own), and the room its buffers keep below its kernel's pages */
const GUEST_DEVICES = ['dev0', 'dev9', 'dev65535'];
const GUEST_DATA = 0x4_0000;
/** an MMIO window outside the SMMU where nothing answers (an external abort) */
const NOWHERE_MMIO = 0x0800_0000;
/** offsets in the SMMU page that are not the drawn register's (registerWrite) */
const ODD_OFFSETS = [OFF.IDR2, OFF.STATUSR, OFF.AGBPA, OFF.GATOS_CTRL];
const nowhere = (r: Rng): number => NOWHERE_MMIO + r.int(0x100) * 4;
/** the host's CMD_SYNCs signal completion by SEV (CS=2) */
const CS_SEV = (): number => 2;

export interface AttackerOptions {
  /** the host driver did not probe: the SMMU is as the hypervisor left it after boot */
  raw?: boolean;
  /** the largest command queue the SMMU takes (IDR1.CMDQS) */
  cmdqMaxShift: number;
}

export class Attacker {
  /** the operations and templates, with their weights (built once) */
  private readonly table: ReadonlyArray<readonly [number, () => HostileOp[]]>;
  private readonly weights: number[];
  private readonly total: number;

  constructor(
    private readonly r: Rng,
    private readonly L: HostLayout,
    private readonly probe: HostProbe,
    private readonly o: AttackerOptions,
  ) {
    this.table = [
      [14, () => [this.mmioWrite()]],
      [4, () => [this.mmioRead()]],
      [16, () => [this.commands()]],
      ...structureAttacks<HostileOp>(this),
      [7, () => [this.ownership()]],
      [12, () => [this.dma()]],
      [4, () => this.raceCommand()],
      [3, () => this.raceSte()],
      [1, () => this.raceL1()],
      [3, () => this.msiRedirect()],
      [3, () => this.staleTlb()],
      [3, () => this.queueRedirect()],
      [2, () => this.liveUnshare()],
      [o.raw ? 8 : 1, () => this.bringUp()],
      [2, () => this.cr0Dance()],
      [L.guest ? 4 : 0, () => this.guestLife()],
    ];
    this.weights = this.table.map(([w]) => w);
    this.total = this.weights.reduce((a, b) => a + b, 0);
  }

  /** The next hostile operation(s). */
  next(): HostileOp[] {
    const ops = [...this.heal(), ...this.draw()].filter(stepable);
    return ops.length ? ops : [this.mmioRead()];
  }

  /**
   * What Linux does to keep its SMMU usable, done most of the time so that the machine does not
   * sit in a dead state (a command error never acknowledged, the SMMU left disabled): acknowledge
   * a pending command-queue error through GERRORN, re-enable the queues and SMMUEN.
   */
  private heal(): HostileOp[] {
    const r = this.r;
    const out: HostileOp[] = [];
    const g = this.probe.reg('GERROR');
    const n = this.probe.reg('GERRORN');
    if (g !== null && n !== null && ((g ^ n) & 1n) !== 0n && r.chance(0.7))
      out.push(this.regWrite('GERRORN', g));
    const cr0 = this.probe.reg('CR0');
    if (cr0 !== null && (cr0 & CR0_QUEUES_ON) !== CR0_QUEUES_ON && r.chance(0.15))
      out.push(this.regWrite('CR0', cr0 | CR0_QUEUES_ON));
    return out;
  }

  private draw(): HostileOp[] {
    return this.table[this.r.index(this.weights, this.total)]![1]();
  }

  // ---- registers ---------------------------------------------------------------------------

  private cur = (name: string): bigint | null => {
    const reg = regByName(name);
    return reg ? this.probe.reg(reg.name as RegName) : null;
  };

  private regWrite(name: RegName, value: bigint, size?: Size): HostileOp {
    const reg = regByName(name)!;
    return {
      op: 'write',
      actor: 'host',
      addr: this.L.smmu + reg.offset,
      size: size ?? reg.width,
      value,
    };
  }

  /**
   * A 64-bit register write, sometimes as two 32-bit halves, low then high, as a driver for a
   * 32-bit platform does (lo_hi_writeq): the emulation table allows only the 64-bit access.
   */
  private wideWrite(name: RegName, value: bigint): HostileOp[] {
    const reg = regByName(name)!;
    if (reg.width !== 8 || !this.r.chance(0.15)) return [this.regWrite(name, value)];
    const at = this.L.smmu + reg.offset;
    return [
      {
        op: 'write',
        actor: 'host',
        addr: at,
        size: 4,
        value: value & 0xffff_ffffn,
        comment: `${name} low half = 0x${(value & 0xffff_ffffn).toString(16)} (a 32-bit access)`,
      },
      {
        op: 'write',
        actor: 'host',
        addr: at + 4,
        size: 4,
        value: value >> 32n,
        comment: `${name} high half = 0x${(value >> 32n).toString(16)} (a 32-bit access)`,
      },
    ];
  }

  mmioWrite(): HostileOp {
    const w = registerWrite(this.r, this.L, this.cur, ODD_OFFSETS, nowhere);
    return { op: 'write', actor: 'host', addr: w.addr, size: w.size, value: w.value };
  }

  mmioRead(): HostileOp {
    const a = registerRead(this.r, this.L);
    return { op: 'read', actor: 'host', addr: a.addr, size: a.size };
  }

  // ---- commands ----------------------------------------------------------------------------

  commands(): HostileOp {
    return { op: 'cmd', actor: 'host', commands: commandBatch(this.r, this.anyCmd, this.sync) };
  }

  private readonly anyCmd = (): CmdSpec => anyCommand(this.r, this.L);

  private readonly sync = (): CmdSpec => syncCommand(this.r, this.L, CS_SEV);

  /** The host command queue as the host sees it: base, size and PROD. */
  private queue(): { base: number; qs: number; prod: number } | null {
    const b = this.probe.reg('CMDQ_BASE');
    const p = this.probe.reg('CMDQ_PROD');
    if (b === null || p === null) return null;
    return queueOf(b, p, this.o.cmdqMaxShift);
  }

  private slot(q: { base: number; qs: number }, prod: number): number {
    return q.base + (prod & (2 ** q.qs - 1)) * 16;
  }

  /** Raw command bytes (any opcode, reserved ones included) written at PROD, then a PROD write. */
  rawCommand(): HostileOp[] {
    const q = this.queue();
    if (!q) return [this.commands()];
    const raw = rawAtProd(this.r, q);
    return [
      {
        op: 'memwrite',
        actor: 'host',
        addr: this.slot(q, q.prod),
        hex: raw.hex,
        comment: 'a raw command at the host CMDQ_PROD slot',
      },
      this.regWrite('CMDQ_PROD', BigInt(raw.prod)),
    ];
  }

  /** Commands written into host queue slots without moving PROD (a later PROD write takes them). */
  queueEntryWrite(): HostileOp {
    const q = this.queue();
    if (!q) return this.randomMemWrite();
    const e = entryAhead(this.r, q, this.anyCmd);
    return { op: 'memwrite', actor: 'host', addr: this.slot(q, e.index), hex: e.hex };
  }

  // ---- structures --------------------------------------------------------------------------

  /** The host STE address of `sid` as the host's own stream table says (null when it has none). */
  steAddr(sid: number): number | null {
    const base = this.probe.reg('STRTAB_BASE');
    const cfg = this.probe.reg('STRTAB_BASE_CFG');
    if (base === null || cfg === null) return null;
    return steAddress(base, cfg, sid, this.probe);
  }

  private l1Addr(sid: number): number | null {
    const base = this.probe.reg('STRTAB_BASE');
    const cfg = this.probe.reg('STRTAB_BASE_CFG');
    if (base === null || cfg === null) return null;
    return l1Address(base, cfg, sid);
  }

  private pickSid(): number {
    const r = this.r;
    return r.chance(0.85)
      ? r.pick(this.L.sids)
      : r.pick([0, 1, 255, 256, 2 ** this.L.sidBits - 1, r.int(2 ** this.L.sidBits)]);
  }

  private cfgi(sid: number): HostileOp {
    const leaf = this.r.chance(0.9) ? 1 : 0;
    return {
      op: 'cmd',
      actor: 'host',
      commands: [{ name: 'CFGI_STE', StreamID: sid, Leaf: leaf }, this.sync()],
    };
  }

  /** [7.1 #1–6] a crafted STE for a device, then CFGI_STE + CMD_SYNC, then (sometimes) a DMA from it. */
  steAndCfgi(): HostileOp[] {
    return this.steAndCfgiFor(this.pickSid());
  }

  private steAndCfgiFor(sid: number): HostileOp[] {
    const r = this.r;
    const at = this.steAddr(sid) ?? targetAddress(r, this.L, 64);
    const w = steWords(r, this.L);
    const ops: HostileOp[] = [
      {
        op: 'memwrite',
        actor: 'host',
        addr: at,
        hex: wordsToHex(w),
        comment: `host STE for StreamID ${sid} (${steSummary(w)})`,
      },
    ];
    if (r.chance(0.85)) ops.push(this.cfgi(sid));
    if (r.chance(0.5)) ops.push(this.dmaFrom(sid));
    return ops;
  }

  /** A CD (into a table the host STEs point at, or anywhere), then CFGI_CD / CFGI_CD_ALL. */
  cdWrite(): HostileOp[] {
    const r = this.r;
    const at = cdAddress(r, this.L, 0.5);
    const ops: HostileOp[] = [
      {
        op: 'memwrite',
        actor: 'host',
        addr: at,
        hex: wordsToHex(cdWords(r, this.L)),
        comment: 'a CD',
      },
    ];
    if (r.chance(0.6)) {
      const sid = this.pickSid();
      ops.push({
        op: 'cmd',
        actor: 'host',
        commands: [
          r.chance(0.5)
            ? { name: 'CFGI_CD', StreamID: sid, SubstreamID: 0, Leaf: 1 }
            : { name: 'CFGI_CD_ALL', StreamID: sid },
          this.sync(),
        ],
      });
    }
    return ops;
  }

  /** One translation-table descriptor in the host's tables (or anywhere it can write). */
  ptWrite(): HostileOp {
    const r = this.r;
    const at = descriptorAddress(r, this.L, 0.5);
    return {
      op: 'memwrite',
      actor: 'host',
      addr: at,
      hex: u64ToHex(ptDescriptor(r, this.L)),
      comment: 'a translation-table descriptor',
    };
  }

  /** [7.1 #14] re-point an L1 stream table descriptor, then CFGI_STE in its span. */
  l1Write(): HostileOp[] {
    const r = this.r;
    const sid = this.pickSid();
    const at = this.l1Addr(sid) ?? targetAddress(r, this.L, 8);
    const ops: HostileOp[] = [
      {
        op: 'memwrite',
        actor: 'host',
        addr: at,
        hex: wordsToHex(l1Words(r, this.L)),
        comment: `L1 descriptor for StreamID ${sid}`,
      },
    ];
    if (r.chance(0.8)) ops.push(this.cfgi(sid));
    return ops;
  }

  randomMemWrite(): HostileOp {
    const hx = randomBytesHex(this.r);
    return { op: 'memwrite', actor: 'host', addr: targetAddress(this.r, this.L), hex: hx };
  }

  // ---- ownership and DMA -------------------------------------------------------------------

  ownership(addr?: number, call?: 'donate' | 'reclaim' | 'share' | 'unshare'): HostileOp {
    const r = this.r;
    const c =
      call ??
      r.weighted<'donate' | 'reclaim' | 'share' | 'unshare'>([
        [40, 'donate'],
        [25, 'reclaim'],
        [20, 'share'],
        [15, 'unshare'],
      ]);
    let a = addr ?? targetAddress(r, this.L, PAGE);
    if (addr === undefined && r.chance(0.05)) a += r.int(PAGE);
    const size = r.weighted<number>([
      [7, PAGE],
      [2, 2 * PAGE],
      [1, 16 * PAGE],
      [1, r.range(1, 64) * PAGE],
    ]);
    const to = r.weighted<string>([
      [6, 'hyp'],
      [3, 'guest:g1'],
      [1, 'guest:g2'],
    ]);
    return { op: 'hyp', call: c, addr: a, size, to, expect: 'ok' };
  }

  private dmaFrom(sid: number, iova?: number): HostileOp {
    const maps = this.L.mappings.filter((m) => m.sid === sid);
    return dmaOf(this.r, sid, iova ?? dmaAddress(this.r, this.L, maps, 4, 4));
  }

  dma(): HostileOp {
    return this.dmaFrom(this.pickSid());
  }

  // ---- races (a second host CPU) -----------------------------------------------------------

  /** [7.1 #31] the next host command slot is rewritten right after the hypervisor's first read of it. */
  raceCommand(): HostileOp[] {
    const r = this.r;
    const q = this.queue();
    if (!q) return [this.commands()];
    const evil: CmdSpec = r.chance(0.5)
      ? {
          name: 'CMD_SYNC',
          CS: 1,
          MSIAddress: hex(targetAddress(r, this.L, 4)),
          MSIData: r.bits(32),
        }
      : anyCommand(r, this.L);
    const benign: CmdSpec = r.pick([
      { name: 'CMD_SYNC', CS: 2 },
      { name: 'CFGI_STE', StreamID: this.pickSid(), Leaf: 1 },
      { name: 'TLBI_NH_ASID', ASID: 1, VMID: 0 },
    ] as CmdSpec[]);
    return [
      {
        op: 'race',
        addr: this.slot(q, q.prod),
        hex: wordsToHex(encodeSpec(evil)),
        afterReads: raceAfterReads(r),
        comment: `a second CPU rewrites the next command slot into ${evil.name}`,
      },
      { op: 'cmd', actor: 'host', commands: [benign] },
    ];
  }

  /** [7.1 #11] the host STE is rewritten between the hypervisor's reads while it reshadows. */
  raceSte(): HostileOp[] {
    const r = this.r;
    const sid = this.pickSid();
    const at = this.steAddr(sid);
    if (at === null) return this.steAndCfgi();
    const evil = steWords(r, this.L);
    if (r.chance(0.5)) {
      evil.fill(0);
      set(evil, STE.V, 1);
      set(evil, STE.Config, CFG.BYPASS);
    }
    return [
      {
        op: 'race',
        addr: at,
        hex: wordsToHex(evil),
        afterReads: raceAfterReads(r),
        comment: `a second CPU rewrites the STE of StreamID ${sid} while the hypervisor copies it`,
      },
      this.cfgi(sid),
      this.dmaFrom(sid),
    ];
  }

  /** The L1 descriptor is rewritten between the hypervisor's read of it and its use. */
  raceL1(): HostileOp[] {
    const r = this.r;
    const sid = this.pickSid();
    const at = this.l1Addr(sid);
    if (at === null) return this.l1Write();
    return [
      {
        op: 'race',
        addr: at,
        hex: wordsToHex(l1Words(r, this.L)),
        afterReads: raceAfterReads(r, 6, 3),
        comment: `a second CPU rewrites the L1 descriptor of StreamID ${sid}`,
      },
      this.cfgi(sid),
    ];
  }

  // ---- templates from the attack catalog ---------------------------------------------------

  /** [7.1 #23–24] an MSI doorbell aimed at protected memory, then an event or a global error to ring it. */
  msiRedirect(): HostileOp[] {
    const r = this.r;
    const line = r.pick(['GERROR', 'EVENTQ', 'PRIQ'] as const);
    const target = targetAddress(r, this.L, 4);
    const ops: HostileOp[] = [];
    // the SMMU ignores an IRQ_CFG0 write while that interrupt is enabled: disable it first (mostly)
    if (r.chance(0.7)) ops.push(this.regWrite('IRQ_CTRL', 0n));
    ops.push(
      this.regWrite(`${line}_IRQ_CFG0` as RegName, BigInt(target)),
      this.regWrite(`${line}_IRQ_CFG1` as RegName, BigInt(r.bits(32))),
    );
    if (r.chance(0.8)) ops.push(this.regWrite('IRQ_CTRL', 7n));
    ops.push(
      r.chance(0.5)
        ? this.dmaFrom(this.pickSid(), r.bits(40))
        : {
            op: 'cmd',
            actor: 'host',
            commands: [
              { name: r.pick(['TLBI_EL3_ALL', 'TLBI_S_EL2_ALL', 'DPTI_ALL']) },
              this.sync(),
            ],
          },
    );
    return ops;
  }

  /** [7.1 #29] DMA through a mapping (the IOTLB caches it), donate its page, DMA again. */
  staleTlb(): HostileOp[] {
    const r = this.r;
    const m = this.L.mappings.length ? r.pick(this.L.mappings) : null;
    if (!m) return [this.dma()];
    return [
      this.dmaFrom(m.sid, m.iova),
      this.ownership(
        m.pa,
        r.chance(0.8) ? 'donate' : r.pick(['share', 'reclaim', 'unshare'] as const),
      ),
      this.dmaFrom(m.sid, m.iova),
    ];
  }

  /**
   * [7.1 #17–18] a queue or table the SMMU uses taken back from the hypervisor while it is live
   * (unshared), then given away (donated to the hypervisor or a guest), then traffic that makes
   * the SMMU write or read it: a faulting DMA (an event record), commands, a reshadow.
   */
  liveUnshare(): HostileOp[] {
    const r = this.r;
    const live = this.L.structures.filter(
      (s) => s.what === 'evtq' || s.what === 'cmdq' || s.what.startsWith('strtab'),
    );
    if (!live.length) return [this.ownership(undefined, 'unshare')];
    const s = r.pick(live);
    const at = s.base + r.int(Math.max(1, Math.floor(s.size / PAGE))) * PAGE;
    const size = r.chance(0.7) ? PAGE : s.size;
    const base = size === PAGE ? at : s.base;
    const to = r.weighted<string>([
      [6, 'hyp'],
      [3, 'guest:g1'],
      [1, 'guest:g2'],
    ]);
    const ops: HostileOp[] = [
      {
        op: 'hyp',
        call: 'unshare',
        addr: base,
        size,
        to: 'hyp',
        expect: 'ok',
        comment: `the live ${s.what} taken back from the hypervisor`,
      },
    ];
    if (r.chance(0.9))
      ops.push({
        op: 'hyp',
        call: 'donate',
        addr: base,
        size,
        to,
        expect: 'ok',
        comment: `the ${s.what} page given away while the SMMU uses it`,
      });
    ops.push(
      r.weighted<() => HostileOp>([
        [4, () => this.dmaFrom(this.pickSid(), r.bits(40))],
        [2, () => this.commands()],
        [1, () => this.cfgi(this.pickSid())],
      ])(),
    );
    return ops;
  }

  /** [7.1 #15–17, 21] a queue base moved (while enabled, or into protected memory), then traffic. */
  queueRedirect(): HostileOp[] {
    const r = this.r;
    const reg = r.weighted<'EVENTQ_BASE' | 'CMDQ_BASE' | 'PRIQ_BASE'>([
      [3, 'EVENTQ_BASE'],
      [2, 'CMDQ_BASE'],
      [1, 'PRIQ_BASE'],
    ]);
    const ops: HostileOp[] = this.wideWrite(
      reg,
      registerValue(r, this.L, regByName(reg)!, this.cur),
    );
    // a command or two read from the moved queue (a hypervisor that follows the move reads them there)
    if (reg === 'CMDQ_BASE' && r.chance(0.5)) ops.push(this.commands());
    if (r.chance(0.4))
      ops.push(this.regWrite('CR0', registerValue(r, this.L, regByName('CR0')!, this.cur)));
    ops.push(this.dmaFrom(this.pickSid(), r.bits(40)));
    return ops;
  }

  /** [7.1 #12–13, 15–16, 22] a bring-up from scratch: the host's own stream table and queues, then SMMUEN. */
  bringUp(): HostileOp[] {
    const r = this.r;
    const L = this.L;
    const scratch = (off: number): number => L.scratch.base + off;
    const l1 = r.chance(0.8) ? scratch(0) : targetAddress(r, L, 64);
    const l2 = r.chance(0.8) ? scratch(0x10000) : targetAddress(r, L, 64);
    const sid = this.pickSid();
    const cfg = [0];
    const twoLevel = r.chance(0.85);
    cfg[0] =
      ((twoLevel ? 1 : 0) << 16) |
      ((r.chance(0.85) ? 8 : r.bits(5)) << 6) |
      (r.chance(0.8) ? L.sidBits : r.bits(6));
    const desc = new Uint32Array(2);
    desc[0] = (l2 | 9) >>> 0;
    desc[1] = Math.floor(l2 / 2 ** 32);
    const ste = steWords(r, L);
    const cmdq = r.chance(0.8) ? scratch(0x20000) : targetAddress(r, L, 32);
    const evtq = r.chance(0.5) ? scratch(0x30000) : targetAddress(r, L, 32);
    const ops: HostileOp[] = [];
    if (r.chance(0.5))
      ops.push(this.regWrite('CR0', BigInt(Number(this.cur('CR0') ?? 0n) & EVENTQEN)));
    ops.push(
      ...this.wideWrite('STRTAB_BASE', (1n << 62n) | BigInt(l1)),
      this.regWrite('STRTAB_BASE_CFG', BigInt(cfg[0]! >>> 0)),
      {
        op: 'memwrite',
        actor: 'host',
        addr: l1 + Math.floor(sid / 256) * 8,
        hex: wordsToHex(desc),
        comment: `L1 descriptor for StreamID ${sid}`,
      },
      {
        op: 'memwrite',
        actor: 'host',
        addr: twoLevel ? l2 + (sid % 256) * 64 : l1 + sid * 64,
        hex: wordsToHex(ste),
        comment: `STE for StreamID ${sid}`,
      },
      ...this.wideWrite(
        'CMDQ_BASE',
        (1n << 62n) | BigInt(cmdq) | BigInt(r.chance(0.8) ? 8 : r.bits(5)),
      ),
      this.regWrite('CMDQ_PROD', 0n),
      this.regWrite('CMDQ_CONS', 0n),
      ...this.wideWrite(
        'EVENTQ_BASE',
        (1n << 62n) | BigInt(evtq) | BigInt(r.chance(0.8) ? 8 : r.bits(5)),
      ),
      this.regWrite('CR0', BigInt(CMDQEN | (r.chance(0.8) ? EVENTQEN : 0))),
      this.regWrite(
        'CR0',
        BigInt(CMDQEN | SMMUEN | (r.chance(0.8) ? EVENTQEN : 0) | (r.chance(0.3) ? ATSCHK : 0)),
      ),
      {
        op: 'cmd',
        actor: 'host',
        commands: [
          { name: 'CFGI_STE', StreamID: sid, Leaf: 1 },
          { name: 'CMD_SYNC', CS: 2 },
        ],
      },
      this.dmaFrom(sid),
    );
    return ops;
  }

  // ---- a guest the host creates and destroys (designs.md §3.5, §3.7) -----------------------

  /**
   * The life of a guest, one stage per iteration as the host sees it: create it with one or two
   * of the machine's devices; its kernel probes its vSMMU, attaches a device and maps and DMAs
   * a buffer (a benign guest); then the host turns on it: it reconfigures the guest's StreamID
   * from its own stream table (sid-owner), or destroys the guest while the device keeps DMAing
   * into the guest's buffer (guest-teardown: a DMA and an isolation check after every phase).
   * Guest driver steps are issued only while the physical command queue runs (a guest whose
   * commands the host has stopped cannot finish a CMD_SYNC: that is the host denying service).
   */
  guestLife(): HostileOp[] {
    const r = this.r;
    const L = this.L;
    const span = L.guest!;
    const name = 'g1';
    const actor = `guest:${name}` as const;
    const g = this.probe.guest(name);
    if (!g) {
      const devs = GUEST_DEVICES.filter(() => r.chance(0.5));
      const devices = (devs.length ? devs : [r.pick(GUEST_DEVICES)])
        .slice(0, 2)
        .map((device, vsid) => ({ device, vsid }));
      return [
        {
          op: 'guest',
          call: 'create',
          name,
          memory: { base: span.base, size: span.size },
          devices,
          boot: false,
          expect: 'ok',
          comment: `the host creates guest ${name} with ${devices.map((d) => d.device).join(' and ')}`,
        },
      ];
    }
    const dev = g.devices[0]!;
    const destroy = (): HostileOp => {
      const iova = g.bufferIova;
      return iova !== null && r.chance(0.9)
        ? {
            op: 'guest',
            call: 'destroy',
            name,
            dmaDuring: { device: dev.device, iova, access: r.chance(0.7) ? 'write' : 'read' },
            expect: 'ok',
            comment: `the host destroys ${name} while ${dev.device} keeps DMAing into the guest's buffer (a DMA and the oracle after every phase)`,
          }
        : { op: 'guest', call: 'destroy', name, expect: 'ok' };
    };
    const cr0 = this.probe.reg('CR0');
    const g0 = this.probe.reg('GERROR');
    const gn = this.probe.reg('GERRORN');
    const queueRuns =
      cr0 !== null &&
      (cr0 & CR0_CMDQ_ON) === CR0_CMDQ_ON &&
      g0 !== null &&
      gn !== null &&
      ((g0 ^ gn) & 1n) === 0n;
    if (!g.alive || !queueRuns || r.chance(0.1)) return [destroy()];
    if (!g.probed) {
      return [
        {
          op: 'driver',
          actor,
          call: 'probe',
          pages: { base: span.ipa + GUEST_DATA, limit: span.ipa + span.size },
          comment: `${name}'s kernel probes its vSMMU`,
        },
      ];
    }
    if (g.bufferIova === null) {
      return [
        { op: 'driver', actor, call: 'attach', sid: 0, domain: 'dma' },
        {
          op: 'driver',
          actor,
          call: 'map',
          sid: 0,
          pa: span.ipa + PAGE,
          size: PAGE,
          dir: 'bidirectional',
          as: 'gbuf',
        },
        {
          op: 'driver',
          actor,
          call: 'dma',
          sid: 0,
          mapping: 'gbuf',
          access: 'write',
          offset: 0,
          comment: `${dev.device} DMAs into ${name}'s buffer (its translation is now cached)`,
        },
      ];
    }
    return r.weighted<() => HostileOp[]>([
      [4, () => [destroy()]],
      [4, () => this.steAndCfgiFor(dev.psid)],
      [
        2,
        () => [
          {
            op: 'driver',
            actor,
            call: 'dma',
            sid: 0,
            mapping: 'gbuf',
            access: r.chance(0.5) ? 'write' : 'read',
            offset: 0,
          },
        ],
      ],
    ])();
  }

  /** [7.1 #19, 22, 30] CR0 edges in odd orders, with an ownership change between. */
  cr0Dance(): HostileOp[] {
    const r = this.r;
    const ops: HostileOp[] = [];
    const n = r.range(2, 4);
    for (let i = 0; i < n; i++) {
      ops.push(this.regWrite('CR0', BigInt(r.bits(5))));
      if (r.chance(0.4)) ops.push(this.ownership(undefined, r.chance(0.7) ? 'donate' : 'reclaim'));
      if (r.chance(0.3)) ops.push(this.commands());
    }
    return ops;
  }
}

/** Whether a scenario step can hold the operation (addresses are exact JSON numbers, below 2^53). */
function stepable(op: HostileOp): boolean {
  if (!addressable(op)) return false;
  if (op.op === 'hyp' && !(Number.isSafeInteger(op.addr + op.size) && op.size > 0)) return false;
  return true;
}
