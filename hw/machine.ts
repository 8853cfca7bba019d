/**
 * The physical machine, laid out as QEMU's arm `virt` board: RAM at 0x4000_0000 (1 GiB by
 * default) and the SMMUv3 at 0x0905_0000 (Page 0, and Page 1 at +0x10000).
 */
import { PhysicalMemory } from './memory.ts';
import { MmioBus } from './bus.ts';
import { Smmu, type SmmuOptions } from './smmu/smmu.ts';
import { DmaEndpoint } from './dma.ts';

export const RAM_BASE = 0x4000_0000;
export const RAM_SIZE_DEFAULT = 0x4000_0000;
export const SMMU_BASE = 0x0905_0000;

export interface DeviceSpec {
  name: string;
  sid: number;
  ssid?: number;
}

export interface MachineOptions {
  ramBase?: number;
  ramSize?: number;
  smmu?: SmmuOptions;
  devices?: DeviceSpec[];
}

export class Machine {
  readonly mem = new PhysicalMemory();
  readonly bus: MmioBus;
  readonly smmu: Smmu;
  readonly devices = new Map<string, DmaEndpoint>();
  readonly ramBase: number;
  readonly ramSize: number;

  constructor(opts: MachineOptions = {}) {
    this.ramBase = opts.ramBase ?? RAM_BASE;
    this.ramSize = opts.ramSize ?? RAM_SIZE_DEFAULT;
    this.mem.addRam('ram', this.ramBase, this.ramSize);
    this.bus = new MmioBus(this.mem);
    this.smmu = new Smmu(SMMU_BASE, this.mem, opts.smmu);
    this.bus.attach(this.smmu);
    for (const d of opts.devices ?? []) this.addDevice(d);
  }

  addDevice(d: DeviceSpec): DmaEndpoint {
    if (this.devices.has(d.name)) throw new Error(`duplicate device name ${d.name}`);
    if (!Number.isInteger(d.sid) || d.sid < 0 || d.sid >= 2 ** 32)
      throw new Error(`device ${d.name}: sid ${d.sid} is not a 32-bit StreamID`);
    const ep = new DmaEndpoint(d.name, d.sid, this.smmu, this.mem, d.ssid);
    this.devices.set(d.name, ep);
    return ep;
  }

  /** The device with this StreamID (the first one declared), if any. */
  deviceBySid(sid: number): DmaEndpoint | undefined {
    for (const d of this.devices.values()) if (d.sid === sid) return d;
    return undefined;
  }
}
