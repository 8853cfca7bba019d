/**
 * The MMIO trap bus. Every CPU access (host, guest vCPU, hyp) is routed by address to RAM or
 * to a device. Host and guest accesses first pass a stage-2 check that a hypervisor can
 * install; an access that stage 2 does not allow becomes a trap (a data abort) delivered to
 * the registered handler, and the handler's result is what the CPU sees.
 *
 * With no hypervisor no check is installed: the host sees physical addresses directly. A
 * hypercall (HVC) is the other way a CPU actor reaches the hypervisor: `hvc` hands it to the
 * handler the hypervisor installed (`installHypercalls`).
 * hw imports nothing from hyp/, host/ or guest/: the check and the handler are interfaces.
 */
import { ExternalAbort, type PhysicalMemory } from './memory.ts';
import { Probe } from './probe.ts';
import { HW_PROBES } from './probes.ts';
import { ExpectedError } from './expected-error.ts';

/** `host`, `hyp`, or `guest:<name>` */
export type Actor = string;
export type AccessSize = 1 | 2 | 4 | 8;
export type Dir = 'r' | 'w';

export function isGuestActor(a: Actor): boolean {
  return a.startsWith('guest:');
}

export interface MmioDevice {
  readonly name: string;
  readonly base: number;
  readonly size: number;
  read(offset: number, size: AccessSize, actor: Actor): bigint;
  write(offset: number, size: AccessSize, value: bigint, actor: Actor): void;
}

/** A data abort taken to the hypervisor: what the CPU tried to do. */
export interface DataAbort {
  readonly actor: Actor;
  /** the address the CPU used (an IPA for guests; a PA for the host) */
  readonly addr: number;
  readonly size: AccessSize;
  readonly dir: Dir;
  /** the value written (writes only) */
  readonly value: bigint;
}

/** Result of a stage-2 check: the PA to use, or TRAP. */
export const TRAP = -1;

export interface Stage2Check {
  /**
   * Translate a CPU access by `actor` at `addr`. Return the physical address to access,
   * or TRAP to deliver a data abort to the trap handler.
   */
  translate(actor: Actor, addr: number, dir: Dir, size: number): number;
}

export type TrapHandler = (abort: DataAbort) => bigint;

/** How many arguments a hypercall passes (x1..x6 of the SMCCC calling convention). */
export const HVC_ARGS = 6;
/** SMCCC_RET_NOT_SUPPORTED: what an HVC returns when no hypervisor takes it. */
export const HVC_NOT_SUPPORTED = -1;

/**
 * The hypervisor's hypercall handler: the caller, the function ID (x0), and its arguments
 * (x1..x6: the caller's own array, read during the call only); returns x0.
 */
export type HypercallHandler = (actor: Actor, fn: number, args: ArrayLike<number>) => number;

/** One hypercall, as the `bus.hvc` probe sees it (a reused record: read it in the listener). */
export interface HvcCall {
  actor: Actor;
  fn: number;
  args: ArrayLike<number>;
}

/** Observer of accesses that reach a device or trap (used for the MMIO log and traces). */
export interface BusAccessEvent {
  readonly actor: Actor;
  readonly dir: Dir;
  readonly addr: number;
  readonly size: AccessSize;
  readonly value: bigint;
  /** the device reached, or undefined for a trapped access */
  readonly device?: MmioDevice;
  /** device-relative offset (devices only) */
  readonly offset?: number;
  readonly trapped: boolean;
}
export type BusObserver = (e: BusAccessEvent) => void;

/** An architecturally synchronous outcome, thrown; built without a stack (hw/expected-error.ts). */
export class CpuAbortError extends ExpectedError {
  constructor(
    readonly actor: Actor,
    readonly addr: number,
    readonly dir: Dir,
    why: string,
  ) {
    super(
      `${actor}: data abort on ${dir === 'r' ? 'read' : 'write'} at 0x${addr.toString(16)}: ${why}`,
    );
    this.name = 'CpuAbortError';
  }
}

export class MmioBus {
  private readonly devices: MmioDevice[] = [];
  private stage2: Stage2Check | null = null;
  private trapHandler: TrapHandler | null = null;
  private hypercallHandler: HypercallHandler | null = null;
  private readonly hvcRecord: HvcCall = { actor: 'host', fn: 0, args: [] };
  /** probe points: every CPU access that reached a device or trapped, every hypercall (hw/probes.ts) */
  readonly probes = {
    access: new Probe(HW_PROBES.busAccess),
    hvc: new Probe(HW_PROBES.hvc),
  } as const;
  /** counters */
  traps = 0;
  deviceAccesses = 0;
  /** HVCs made by CPU actors (taken by a handler or not) */
  hypercalls = 0;

  constructor(readonly mem: PhysicalMemory) {}

  attach(dev: MmioDevice): void {
    for (const d of this.devices) {
      if (dev.base < d.base + d.size && d.base < dev.base + dev.size)
        throw new Error(`device ${dev.name} overlaps ${d.name}`);
    }
    if (this.mem.isRam(dev.base, 1) || this.mem.isRam(dev.base + dev.size - 1, 1))
      throw new Error(`device ${dev.name} overlaps RAM`);
    this.devices.push(dev);
  }

  deviceAt(pa: number): MmioDevice | undefined {
    for (const d of this.devices) if (pa >= d.base && pa < d.base + d.size) return d;
    return undefined;
  }

  get deviceList(): readonly MmioDevice[] {
    return this.devices;
  }

  /** Install (or remove, with null) the hypervisor's stage-2 check and trap handler. */
  installStage2(check: Stage2Check | null, handler: TrapHandler | null): void {
    this.stage2 = check;
    this.trapHandler = handler;
  }

  /** Install (or remove, with null) the hypervisor's hypercall handler. */
  installHypercalls(handler: HypercallHandler | null): void {
    this.hypercallHandler = handler;
  }

  /**
   * An HVC by a CPU actor (the host or a guest vCPU): function `fn` with up to HVC_ARGS
   * arguments, handled by the installed hypervisor; HVC_NOT_SUPPORTED when there is none.
   * Allocation-free: `args` is the caller's (reused) array.
   */
  hvc(actor: Actor, fn: number, args: ArrayLike<number>): number {
    if (actor === 'hyp') throw new Error('hvc: the hypervisor does not make hypercalls to itself');
    if (args.length > HVC_ARGS)
      throw new Error(`hvc 0x${fn.toString(16)}: ${args.length} arguments, at most ${HVC_ARGS}`);
    this.hypercalls++;
    if (this.probes.hvc.active) {
      const r = this.hvcRecord;
      r.actor = actor;
      r.fn = fn;
      r.args = args;
      this.probes.hvc.fire(r);
    }
    const h = this.hypercallHandler;
    return h === null ? HVC_NOT_SUPPORTED : h(actor, fn, args);
  }

  get hasStage2(): boolean {
    return this.stage2 !== null;
  }

  /** Subscribe to `probes.access`; returns the unsubscribe function. */
  observe(o: BusObserver): () => void {
    return this.probes.access.subscribe(o);
  }

  private notify(e: BusAccessEvent): void {
    this.probes.access.fire(e);
  }

  /** Resolve an actor's address to a PA, or TRAP. The hyp bypasses stage 2. */
  private resolve(actor: Actor, addr: number, dir: Dir, size: number): number {
    if (actor === 'hyp' || this.stage2 === null) return addr;
    return this.stage2.translate(actor, addr, dir, size);
  }

  private trap(actor: Actor, addr: number, size: AccessSize, dir: Dir, value: bigint): bigint {
    this.traps++;
    if (!this.trapHandler)
      throw new CpuAbortError(actor, addr, dir, 'stage-2 trap with no handler');
    const abort: DataAbort = { actor, addr, size, dir, value };
    // a trapped write is logged before the handler runs (it happened first); a read after (its value is the handler's)
    if (dir === 'w' && this.probes.access.active)
      this.notify({ actor, dir, addr, size, value, trapped: true });
    const result = this.trapHandler(abort);
    if (dir === 'w') return value;
    const v = BigInt.asUintN(size * 8, result);
    if (this.probes.access.active) this.notify({ actor, dir, addr, size, value: v, trapped: true });
    return v;
  }

  read(actor: Actor, addr: number, size: AccessSize): bigint {
    const pa = this.resolve(actor, addr, 'r', size);
    if (pa === TRAP) return this.trap(actor, addr, size, 'r', 0n);
    const dev = this.deviceAt(pa);
    if (dev) {
      this.deviceAccesses++;
      const v = BigInt.asUintN(size * 8, dev.read(pa - dev.base, size, actor));
      if (this.probes.access.active)
        this.notify({
          actor,
          dir: 'r',
          addr,
          size,
          value: v,
          device: dev,
          offset: pa - dev.base,
          trapped: false,
        });
      return v;
    }
    try {
      return this.mem.read(pa, size);
    } catch (e) {
      if (e instanceof ExternalAbort)
        throw new CpuAbortError(actor, addr, 'r', 'external abort (no RAM or device)');
      throw e;
    }
  }

  write(actor: Actor, addr: number, size: AccessSize, value: bigint): void {
    const v = BigInt.asUintN(size * 8, value);
    const pa = this.resolve(actor, addr, 'w', size);
    if (pa === TRAP) {
      this.trap(actor, addr, size, 'w', v);
      return;
    }
    const dev = this.deviceAt(pa);
    if (dev) {
      this.deviceAccesses++;
      if (this.probes.access.active)
        this.notify({
          actor,
          dir: 'w',
          addr,
          size,
          value: v,
          device: dev,
          offset: pa - dev.base,
          trapped: false,
        });
      dev.write(pa - dev.base, size, v, actor);
      return;
    }
    try {
      this.mem.write(pa, size, v);
    } catch (e) {
      if (e instanceof ExternalAbort)
        throw new CpuAbortError(actor, addr, 'w', 'external abort (no RAM or device)');
      throw e;
    }
  }

  read32(actor: Actor, addr: number): number {
    return Number(this.read(actor, addr, 4));
  }
  write32(actor: Actor, addr: number, v: number): void {
    this.write(actor, addr, 4, BigInt(v >>> 0));
  }
  read64(actor: Actor, addr: number): bigint {
    return this.read(actor, addr, 8);
  }
  write64(actor: Actor, addr: number, v: bigint): void {
    this.write(actor, addr, 8, v);
  }

  /**
   * Bulk CPU memory access (memcpy-like). Each page is checked by stage 2; a page that traps
   * is accessed with 8-byte (or smaller) trapped accesses so the hypervisor sees every one.
   */
  readBytes(actor: Actor, addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const n = Math.min(4096 - (a & 0xfff), len - done);
      const pa = this.resolve(actor, a, 'r', n);
      if (pa === TRAP || this.deviceAt(pa)) {
        for (let i = 0; i < n; i++) out[done + i] = Number(this.read(actor, a + i, 1));
      } else {
        try {
          out.set(this.mem.readBytes(pa, n), done);
        } catch (e) {
          if (e instanceof ExternalAbort)
            throw new CpuAbortError(actor, a, 'r', 'external abort (no RAM or device)');
          throw e;
        }
      }
      done += n;
    }
    return out;
  }

  /**
   * Read `n` 32-bit words into `out` without allocating (a CPU's memcpy of a descriptor or a
   * command). The range must lie in one page; a trapping page is read word by word through
   * the trap so the hypervisor sees every access.
   */
  readWords(actor: Actor, addr: number, out: Uint32Array, n = out.length): void {
    const pa = this.resolve(actor, addr, 'r', n * 4);
    if (pa === TRAP || this.deviceAt(pa) || (addr & 0xfff) + n * 4 > 4096) {
      for (let i = 0; i < n; i++) out[i] = Number(this.read(actor, addr + 4 * i, 4));
      return;
    }
    try {
      this.mem.readWords(pa, out, n);
    } catch (e) {
      if (e instanceof ExternalAbort)
        throw new CpuAbortError(actor, addr, 'r', 'external abort (no RAM or device)');
      throw e;
    }
  }

  /** Write `n` 32-bit words from `words` without allocating; same rules as `readWords`. */
  writeWords(actor: Actor, addr: number, words: Uint32Array, n = words.length): void {
    const pa = this.resolve(actor, addr, 'w', n * 4);
    if (
      pa === TRAP ||
      this.deviceAt(pa) ||
      (addr & 0xfff) + n * 4 > 4096 ||
      !this.mem.isRam(pa, n * 4)
    ) {
      for (let i = 0; i < n; i++) this.write(actor, addr + 4 * i, 4, BigInt(words[i]!));
      return;
    }
    for (let i = 0; i < n; i++) this.mem.write32(pa + 4 * i, words[i]!);
  }

  /**
   * `len` zero bytes at `addr`: writeBytes of a zero buffer (same stage-2 checks and traps), for
   * scrubbing memory without allocating the buffer.
   */
  zeroBytes(actor: Actor, addr: number, len: number): void {
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const n = Math.min(4096 - (a & 0xfff), len - done);
      const pa = this.resolve(actor, a, 'w', n);
      if (pa === TRAP || this.deviceAt(pa)) {
        for (let i = 0; i < n; i++) this.write(actor, a + i, 1, 0n);
      } else {
        try {
          this.mem.zero(pa, n);
        } catch (e) {
          if (e instanceof ExternalAbort)
            throw new CpuAbortError(actor, a, 'w', 'external abort (no RAM or device)');
          throw e;
        }
      }
      done += n;
    }
  }

  writeBytes(actor: Actor, addr: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const a = addr + done;
      const n = Math.min(4096 - (a & 0xfff), data.length - done);
      const pa = this.resolve(actor, a, 'w', n);
      if (pa === TRAP || this.deviceAt(pa)) {
        for (let i = 0; i < n; i++) this.write(actor, a + i, 1, BigInt(data[done + i]!));
      } else {
        try {
          // the whole buffer in one page (a descriptor or a command) goes as it is, without a view
          this.mem.writeBytes(pa, n === data.length ? data : data.subarray(done, done + n));
        } catch (e) {
          if (e instanceof ExternalAbort)
            throw new CpuAbortError(actor, a, 'w', 'external abort (no RAM or device)');
          throw e;
        }
      }
      done += n;
    }
  }
}
