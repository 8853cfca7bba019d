/**
 * The malicious host against the paravirtual ABI (host/malicious/pv-attacks.ts): under each
 * design an attack applies to, every call it must have refused is refused (PvAttackAccepted
 * otherwise), at least one hypercall is refused, and the isolation oracle finds no breach, with a
 * guest running whose StreamID and memory the attacks go after. Under pkvm (trap-and-emulate)
 * there is no hypercall handler at all.
 */
import { describe, expect, it } from 'vitest';
import { PV_ATTACKS } from '../../../host/malicious/pv-attacks.ts';
import { HYP_BASE, HYP_END } from '../../reference.ts';
import { bootPv } from '../../hyp/pv/rig.ts';
import { bootHyp } from '../../hyp/pkvm-rig.ts';
import { PV_CALLS } from '../../../hyp/pv/abi.ts';

describe('PV_ATTACKS: each is refused and isolation holds under its designs', () => {
  it('the catalog covers the brief: every name once, each with a description and a design', () => {
    const names = PV_ATTACKS.map((a) => a.name);
    expect(new Set(names).size).toBe(names.length);
    for (const a of PV_ATTACKS) {
      expect(a.description.length).toBeGreaterThan(20);
      expect(a.kinds.length).toBeGreaterThan(0);
    }
    expect(PV_ATTACKS.filter((a) => a.kinds.includes('pv')).length).toBeGreaterThanOrEqual(12);
    expect(PV_ATTACKS.filter((a) => a.kinds.includes('pv-idmap')).length).toBeGreaterThanOrEqual(3);
  });

  for (const a of PV_ATTACKS)
    for (const kind of a.kinds) {
      it(`${a.name} under ${kind === 'pv' ? 'pkvm-pv' : 'pkvm-pv-idmap'}`, () => {
        const r = bootPv(kind);
        r.hyp.createGuest({
          name: 'vm1',
          memory: { base: 0x6000_0000, size: 0x100_0000 },
          devices: [{ vsid: 0, psid: 16 }],
        });
        // the host's own devices in use, as the attacker would find them
        r.io.attach(8, 'dma');
        const iova = r.io.map(8, 0x5000_0000, 4096);
        const refused = r.hyp.pv!.stats.refused;
        a.run({
          bus: r.m.bus,
          actor: 'host',
          sids: [8, 9, 16],
          hypBase: HYP_BASE,
          hypSize: HYP_END - HYP_BASE,
        });
        expect(r.hyp.pv!.stats.refused).toBeGreaterThan(refused);
        expect(r.hyp.panicked).toBeNull();
        const rep = r.oracle().check();
        expect(rep.breaches).toEqual([]);
        // the guest's device is still the guest's, and the host's DMA still works
        expect(r.hyp.sidOwner.get(16)?.name).toBe('vm1');
        const o = r.m.devices.get('nic')!.read(iova, 4);
        expect(o.ok).toBe(true);
      });
    }

  it('under pkvm (trap-and-emulate) no hypervisor takes a pv hypercall: SMCCC NOT_SUPPORTED', () => {
    const { m } = bootHyp();
    expect(m.bus.hvc('host', PV_CALLS.map_pages.id, [1, 0, HYP_BASE, 4096, 1, 3])).toBe(-1);
    expect(m.bus.hypercalls).toBe(1);
  });
});
