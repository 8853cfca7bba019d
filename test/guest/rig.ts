/**
 * Shared set-up for the guest tests: the machine with the pKVM-style hypervisor and the host
 * driver (as test/hyp/pkvm-rig.ts), plus guests built by the hypervisor, their kernels (the
 * same driver, as actor guest:<name>), raw access to a guest's vSMMU registers and memory, and
 * a log of every command the physical SMMU consumed.
 *
 * Register offsets and field positions are the reference's (smmuv3.md §1, §4, §5; designs.md
 * Appendix A), written once as plain numbers in test/reference.ts, so a wrong declaration in hw/
 * or hyp/ shows up here.
 */
import { Machine, type DeviceSpec } from '../../hw/machine.ts';
import { PkvmHyp } from '../../hyp/pkvm.ts';
import { makePolicy, type FailurePolicy, type RuleName } from '../../hyp/policy/policy.ts';
import type { Guest } from '../../hyp/vm/guest.ts';
import type { VSmmu } from '../../hyp/vm/vsmmu.ts';
import { ArmSmmuV3 } from '../../host/driver/driver.ts';
import { DomainManager } from '../../host/driver/domain.ts';
import { DmaApi } from '../../host/dma-api.ts';
import { GuestKernel } from '../../guest/vm.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import { HOST_PAGES } from '../hyp/pkvm-rig.ts';
import { CERROR_ILL, CR0, EVENT, GERROR, OPCODE, RAM_BASE, REG, SMMU_BASE } from '../reference.ts';

/** where a guest finds its vSMMU and its RAM (the virt layout; hyp/vm/guest.ts) */
export const VSMMU = SMMU_BASE;
export const GUEST_RAM = RAM_BASE;
export const GUEST_SIZE = 0x100_0000;
/** the PAs the tests donate to guests */
export const VM1_PA = 0x6000_0000;
export const VM2_PA = 0x6100_0000;

/** designs.md Appendix A offsets (page 1 at +0x10000 for the event queue pointers) */
export const O = REG;
/** CR0 bits */
export const { SMMUEN, PRIQEN, EVENTQEN, CMDQEN, ATSCHK } = CR0;
/** GERROR bits */
export const { CMDQ_ERR, EVENTQ_ABT_ERR } = GERROR;
/** CMDQ_CONS.ERR[30:24] = CERROR_ILL */
export { CERROR_ILL };
/** opcodes (reference §4.2) */
export const OPC = OPCODE;
/** event numbers (reference §5.1) */
export const EV = EVENT;

/** a bit field of a little-endian structure given as 32-bit words: absolute bits [hi:lo] */
export function bitsOf(w: ArrayLike<number>, hi: number, lo: number): number {
  let v = 0n;
  for (let i = Math.floor(hi / 32); i >= Math.floor(lo / 32); i--)
    v = (v << 32n) | BigInt(w[i]! >>> 0);
  return Number((v >> BigInt(lo % 32)) & ((1n << BigInt(hi - lo + 1)) - 1n));
}
/** a command's fields (reference §4.2): opcode [7:0], StreamID / VMID+ASID in DW0[63:32], DW1 */
export const cmd = {
  op: (w: ArrayLike<number>) => w[0]! & 0xff,
  sid: (w: ArrayLike<number>) => w[1]! >>> 0,
  ssid: (w: ArrayLike<number>) => bitsOf(w, 31, 12),
  vmid: (w: ArrayLike<number>) => bitsOf(w, 47, 32),
  asid: (w: ArrayLike<number>) => bitsOf(w, 63, 48),
  leaf: (w: ArrayLike<number>) => w[2]! & 1,
  /** VA[63:12] of TLBI_NH_VA */
  va: (w: ArrayLike<number>) => bitsOf(w, 127, 76) * 4096,
};
/** STE fields (reference §2.2) */
export const steF = {
  v: (w: ArrayLike<number>) => bitsOf(w, 0, 0),
  config: (w: ArrayLike<number>) => bitsOf(w, 3, 1),
  s1ctx: (w: ArrayLike<number>) => bitsOf(w, 51, 6) * 64,
  vmid: (w: ArrayLike<number>) => bitsOf(w, 143, 128),
  s2ttb: (w: ArrayLike<number>) => bitsOf(w, 243, 196) * 16,
};

export interface RigOpts {
  failure?: FailurePolicy;
  weaken?: RuleName[];
  allowAts?: boolean;
  budget?: number;
  devices?: DeviceSpec[];
}

export interface Rig {
  m: Machine;
  hyp: PkvmHyp;
  drv: ArmSmmuV3;
  dm: DomainManager;
  dma: DmaApi;
  /** every command the physical SMMU consumed, in order (copies) */
  phys: Uint32Array[];
}

/** Boot the hypervisor (with its policy) and probe the host driver on it. */
export function boot(o: RigOpts = {}): Rig {
  const m = new Machine({
    devices: o.devices ?? [
      { name: 'nic', sid: 8 },
      { name: 'gpu', sid: 9 },
      { name: 'disk', sid: 16 },
    ],
  });
  const policy = makePolicy('pkvm', {
    failure: o.failure ?? 'reject',
    weaken: o.weaken ?? [],
    allowAts: o.allowAts ?? false,
    ...(o.budget !== undefined ? { guestCmdBudget: o.budget } : {}),
  });
  const hyp = new PkvmHyp(m, { policy }).boot();
  const drv = new ArmSmmuV3(m.bus, { base: SMMU_BASE, pages: { ...HOST_PAGES } });
  drv.probe();
  const dm = new DomainManager(drv);
  const phys: Uint32Array[] = [];
  m.smmu.cmdq.onCommand = (w) => phys.push(Uint32Array.from(w));
  return { m, hyp, drv, dm, dma: new DmaApi(drv, dm), phys };
}

export interface Vm {
  g: Guest;
  v: VSmmu;
  actor: string;
  /** the guest kernel (absent with boot: false) */
  k: GuestKernel;
}

/** Build a guest with `devices` (vSID → pSID) and boot its kernel on its vSMMU (unless boot is false). */
export function vm(
  r: Rig,
  name: string,
  pa: number,
  devices: Array<{ vsid: number; psid: number }>,
  boot = true,
): Vm {
  const g = r.hyp.createGuest({ name, memory: { base: pa, size: GUEST_SIZE }, devices });
  const v = r.hyp.vsmmus.get(name)!;
  const k = boot
    ? new GuestKernel(r.m.bus, {
        actor: g.actor,
        ram: { base: GUEST_RAM, size: GUEST_SIZE },
        smmu: VSMMU,
        streams: Object.fromEntries(devices.map((d) => [`dev${d.vsid}`, d.vsid])),
      })
    : (null as unknown as GuestKernel);
  return { g, v, actor: g.actor, k };
}

// ---- the guest's vCPU: its vSMMU registers and its memory (IPAs) -------------------------------------

export const gR32 = (r: Rig, x: Vm, off: number): number =>
  r.m.bus.read32(x.actor, VSMMU + off) >>> 0;
export const gW32 = (r: Rig, x: Vm, off: number, v: number): void =>
  r.m.bus.write32(x.actor, VSMMU + off, v >>> 0);
export const gR64 = (r: Rig, x: Vm, off: number): bigint => r.m.bus.read64(x.actor, VSMMU + off);
export const gW64 = (r: Rig, x: Vm, off: number, v: bigint): void =>
  r.m.bus.write64(x.actor, VSMMU + off, v);
export function gMemWrite(r: Rig, x: Vm, ipa: number, words: ArrayLike<number>): void {
  r.m.bus.writeWords(x.actor, ipa, Uint32Array.from(words), words.length);
}
export function gMemRead(r: Rig, x: Vm, ipa: number, n: number): Uint32Array {
  const out = new Uint32Array(n);
  r.m.bus.readWords(x.actor, ipa, out, n);
  return out;
}

/**
 * Take over the guest's command queue: CMDQEN off, CMDQ_BASE = `ipa` with `log2` entries,
 * PROD = CONS = 0, CMDQEN on (SMMUEN/EVENTQEN as they were). Commands are then written with
 * `put` and published with a PROD write.
 */
export function rawQueue(
  r: Rig,
  x: Vm,
  ipa: number,
  log2: number,
): { put: (i: number, name: string, f?: Record<string, number | bigint>) => void } {
  const cr0 = gR32(r, x, O.CR0);
  gW32(r, x, O.CR0, cr0 & ~CMDQEN);
  gW64(r, x, O.CMDQ_BASE, (1n << 62n) | BigInt(ipa) | BigInt(log2));
  gW32(r, x, O.CMDQ_PROD, 0);
  gW32(r, x, O.CMDQ_CONS, 0);
  gW32(r, x, O.CR0, cr0 | CMDQEN);
  return {
    put: (i, name, f = {}) => gMemWrite(r, x, ipa + (i % 2 ** log2) * 16, encodeCommand(name, f)),
  };
}

/** The commands the physical SMMU consumed since `from`, without the hypervisor's CMD_SYNCs when `noSync`. */
export function physSince(r: Rig, from: number, noSync = false): Uint32Array[] {
  return r.phys.slice(from).filter((w) => !noSync || cmd.op(w) !== OPC.CMD_SYNC);
}

/** The physical STE of `sid` (the hypervisor's shadow table, what the hardware reads). */
export const physSte = (r: Rig, sid: number): Uint32Array => r.hyp.shadowSte(sid);
