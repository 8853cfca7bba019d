/**
 * Shared set-up for the paravirtual designs' tests: a machine with the hypervisor booted under
 * pkvm-pv or pkvm-pv-idmap, the host's paravirtual driver on it, raw hypercalls as the host, a
 * log of every command the SMMU consumed, and the isolation oracle over the hardware.
 *
 * Call IDs, errnos and prot bits are the ABI's (hyp/pv/abi.ts: the contract both sides share);
 * opcodes and STE fields are the reference's (test/reference.ts, test/guest/rig.ts).
 */
import { Machine } from '../../../hw/machine.ts';
import { PkvmHyp } from '../../../hyp/pkvm.ts';
import { makePolicy } from '../../../hyp/policy/policy.ts';
import { PV_CALLS, type PvCallName, type PvKind } from '../../../hyp/pv/abi.ts';
import { PvIommu } from '../../../host/pv/iommu.ts';
import { IsolationOracle } from '../../../scenarios/check/oracle.ts';
import { HOST_PAGES } from '../pkvm-rig.ts';

export interface PvRig {
  m: Machine;
  hyp: PkvmHyp;
  io: PvIommu;
  /** every command the SMMU consumed, in order (copies) */
  phys: Uint32Array[];
  /** a raw hypercall as the host: x0 */
  hvc(call: PvCallName, ...args: number[]): number;
  oracle(): IsolationOracle;
}

export function bootPv(kind: PvKind = 'pv'): PvRig {
  const m = new Machine({
    devices: [
      { name: 'nic', sid: 8 },
      { name: 'gpu', sid: 9 },
      { name: 'disk', sid: 16 },
    ],
  });
  const hyp = new PkvmHyp(m, {
    policy: makePolicy(kind === 'pv' ? 'pkvm-pv' : 'pkvm-pv-idmap'),
  }).boot();
  const phys: Uint32Array[] = [];
  m.smmu.cmdq.onCommand = (w) => phys.push(Uint32Array.from(w));
  const io = new PvIommu(m.bus, { pages: { ...HOST_PAGES } }, kind);
  io.probe();
  let oracle: IsolationOracle | null = null;
  return {
    m,
    hyp,
    io,
    phys,
    hvc: (call, ...args) => m.bus.hvc('host', PV_CALLS[call].id, args),
    oracle: () => {
      if (!oracle) {
        oracle = new IsolationOracle(m, {
          protectedRanges: () => hyp.protectedRanges(),
          rangesFor: (name) => hyp.rangesForSid(m.devices.get(name)!.sid),
        });
        oracle.attach();
      }
      return oracle;
    },
  };
}

/** The opcodes of the commands consumed since `from`. */
export const opsSince = (r: PvRig, from: number): number[] =>
  r.phys.slice(from).map((w) => w[0]! & 0xff);
