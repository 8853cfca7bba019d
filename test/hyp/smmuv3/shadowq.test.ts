import { describe, expect, it } from 'vitest';
import { Machine } from '../../../hw/machine.ts';
import { OFF } from '../../../hw/smmu/regs.ts';
import { PkvmHyp } from '../../../hyp/pkvm.ts';
import { CMDQEN } from '../../../hyp/smmuv3/cr0.ts';
import {
  SYNC_OK,
  SYNC_NO_ROOM,
  SYNC_STOPPED,
  ShadowQueueError,
} from '../../../hyp/smmuv3/shadowq.ts';

describe('shadow queue sync(): a code, not an exception', () => {
  it('with CMDQEN=0 (after boot, before the host enables it) the hardware does not consume: SYNC_STOPPED', () => {
    const m = new Machine();
    const hyp = new PkvmHyp(m).boot();
    const sq = hyp.shadowQ;
    expect(sq.sync([])).toBe(SYNC_STOPPED);
    expect(sq.why(SYNC_STOPPED)).toBe(
      'shadow command queue: the hardware did not consume the queue (CMDQEN=0?)',
    );
    const e = sq.error(SYNC_STOPPED);
    expect(e).toBeInstanceOf(ShadowQueueError);
    expect(e.queued).toBe(true);
    expect(e.message).toBe(sq.why(SYNC_STOPPED));
  });

  it('once the hardware queue runs, the commands and their CMD_SYNC are consumed: SYNC_OK', () => {
    const m = new Machine();
    const hyp = new PkvmHyp(m).boot();
    m.bus.write32('hyp', m.smmu.base + OFF.CR0, CMDQEN); // as the host's CR0 write would
    const syncs = hyp.shadowQ.stats.syncs;
    expect(hyp.shadowQ.sync([])).toBe(SYNC_OK);
    expect(hyp.shadowQ.stats.syncs).toBe(syncs + 1);
    expect(hyp.shadowQ.drained()).toBe(true);
  });

  it('no room: nothing is appended', () => {
    const m = new Machine();
    const hyp = new PkvmHyp(m).boot();
    const sq = hyp.shadowQ;
    const prod = sq.prod;
    const many = Array.from({ length: sq.size }, () => new Uint32Array(4));
    expect(sq.sync(many)).toBe(SYNC_NO_ROOM);
    expect(sq.prod).toBe(prod);
    expect(sq.why(SYNC_NO_ROOM)).toBe(
      "shadow command queue: no space for the hypervisor's commands",
    );
  });
});
