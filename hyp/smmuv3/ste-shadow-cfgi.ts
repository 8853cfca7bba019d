/**
 * STE shadowing on CFGI_STE (designs.md §1.7), pKVM's design: when the host issues CFGI_STE
 * the hypervisor copies the host STE once into its own memory, sanitizes the copy, and installs
 * it in the shadow stream table (the only one the hardware reads).
 */
import { get } from '../../hw/bits.ts';
import { L1STD, STE_WORDS } from '../../hw/smmu/ste.ts';
import { refusalMessage } from '../mem/ownership.ts';
import { PoolExhausted } from '../mem/pool.ts';
import { pageSpan, type Span } from '../mem/span.ts';
import { RULE_NAMES, type RuleName } from '../policy/policy.ts';
import { ShadowQueueError } from './shadowq.ts';
import { encodeCommand } from '../../hw/smmu/commands.ts';
import { sanitizeSte, abortSte } from './ste-sanitize.ts';
import { SMMUEN } from './cr0.ts';
import type { ShadowOutcome, SteShadowing, SteShadowEnv } from './ste-shadowing.ts';

const CFGI_ALL = encodeCommand('CFGI_ALL', {});
const noIssue = (): void => {};

export class CfgiSteShadowing implements SteShadowing {
  reshadows = 0;
  private readonly ste = new Uint32Array(STE_WORDS);
  private readonly l1 = new Uint32Array(2);

  /** installing a whole table while the hardware is disabled: one CFGI_ALL at the end */
  private batch = false;
  private readonly issue = (cmds: Uint32Array[]): void => this.env.shadowQ.issueAndSync(cmds);

  constructor(private readonly env: SteShadowEnv) {}

  /** CFGI_STE from the host: copy the host STE once, sanitize the copy, install it. */
  reshadow(sid: number): ShadowOutcome {
    this.reshadows++;
    const env = this.env;
    env.noteReshadow(sid);
    const t = env.view.table;
    const sidBits = env.sidBits;
    const fail = (rule: RuleName, why: string): 'reject' | 'log' => env.failures.violate(rule, why);
    if (!env.weak('cfgi-sid')) {
      if (!(env.view.cr0 & SMMUEN))
        return fail('cfgi-sid', `CFGI_STE StreamID ${sid} while SMMUEN=0`);
      if (sid >= 2 ** t.log2size || sid >= 2 ** sidBits)
        return fail(
          'cfgi-sid',
          `CFGI_STE StreamID ${sid} beyond the stream table (2^${Math.min(t.log2size, sidBits)} StreamIDs)`,
        );
    } else if (sid >= 2 ** sidBits) {
      return 'log';
    }
    const owner = env.sidGuest(sid);
    if (owner !== undefined && !env.weak('sid-owner')) {
      return fail(
        'sid-owner',
        `CFGI_STE StreamID ${sid}: the StreamID is assigned to guest ${owner}`,
      );
    }
    const w = this.ste;
    let steAddr: number;
    let l2: Span | null = null;
    if (t.twoLevel) {
      env.hostMem.load64(t.base + (sid >>> t.split) * 8, this.l1);
      const span = get(this.l1, L1STD.Span);
      const l2ptr = get(this.l1, L1STD.L2Ptr) * 64;
      if (span === 0 || span > t.split + 1 || (sid & (2 ** t.split - 1)) >= 2 ** (span - 1)) {
        return this.refuseSte(
          sid,
          'cfgi-sid',
          `CFGI_STE StreamID ${sid}: the host L1 descriptor (Span=${span}) has no STE for it`,
        );
      }
      steAddr = l2ptr + (sid & (2 ** t.split - 1)) * 64;
      l2 = pageSpan(l2ptr, 2 ** (span - 1) * 64);
      if (!env.isRam(l2.base, l2.size))
        return this.refuseSte(
          sid,
          'queue-share',
          `host L2 stream table 0x${l2ptr.toString(16)} for StreamID ${sid} is not memory`,
        );
      if (!env.weak('queue-share')) {
        const r = env.own.tryShareAndPin(l2.base, l2.size);
        if (r !== null)
          return this.refuseSte(
            sid,
            'queue-share',
            `host L2 stream table 0x${l2ptr.toString(16)} for StreamID ${sid} cannot be shared: ${refusalMessage(r.transition, r.pa, r.why)}`,
          );
      } else l2 = null;
    } else {
      steAddr = t.base + sid * 64;
    }
    try {
      env.hostMem.copy(steAddr, w, STE_WORDS);
      if (env.weak('double-fetch')) {
        // the double-fetch weakening: check the first read, install a second one
        const verdict = sanitizeSte(w, env.steEnv);
        if (verdict) return this.refuseSte(sid, verdict.rule, verdict.reason);
        env.hostMem.copy(steAddr, w, STE_WORDS);
        const all = new Set(RULE_NAMES);
        all.delete('ste-s2-fields');
        sanitizeSte(w, { ...env.steEnv, weak: (r) => all.has(r) });
      } else {
        const verdict = sanitizeSte(w, env.steEnv);
        if (verdict) {
          const outcome = env.failures.violate(verdict.rule, `StreamID ${sid}: ${verdict.reason}`);
          this.installSte(sid, w); // the abort STE the sanitizer left
          return outcome;
        }
      }
    } finally {
      if (l2) env.own.unpinAndUnshare(l2.base, l2.size);
    }
    return this.installSte(sid, w);
  }

  /**
   * The host table is live again after it was released (runtime PM's resume, a second reset):
   * nothing watched it meanwhile, so every STE it holds is reshadowed, as if the host had issued
   * CFGI_STE for each (the v6 cover's warning: runtime PM reshadows everything). Called while
   * the hardware's SMMUEN is still 0, so the STEs are installed without a CFGI each and one
   * CFGI_ALL + CMD_SYNC follows: its SYNC_* outcome (not SYNC_OK: the enable is refused).
   * A 2-level table is visited through its valid L1 descriptors; StreamIDs assigned to guests
   * keep the STEs their vSMMUs made.
   */
  tableBack(): number {
    const env = this.env;
    const t = env.view.table;
    const sids = Math.min(t.log2size, env.sidBits);
    this.batch = true;
    try {
      if (!t.twoLevel) {
        for (let sid = 0; sid < 2 ** sids; sid++)
          if (env.sidGuest(sid) === undefined) this.reshadow(sid);
      } else {
        for (let i = 0; i < 2 ** Math.max(0, sids - t.split); i++) {
          env.hostMem.load64(t.base + i * 8, this.l1);
          const span = get(this.l1, L1STD.Span);
          if (span === 0 || span > t.split + 1) continue;
          for (let j = 0; j < 2 ** (span - 1); j++) {
            const sid = i * 2 ** t.split + j;
            if (env.sidGuest(sid) === undefined) this.reshadow(sid);
          }
        }
      }
    } finally {
      this.batch = false;
    }
    return env.shadowQ.sync([CFGI_ALL]);
  }

  private refuseSte(sid: number, rule: RuleName, why: string): 'reject' | 'log' {
    const outcome = this.env.failures.violate(rule, why);
    if (sid < 2 ** this.env.sidBits) {
      abortSte(this.ste);
      this.installSte(sid, this.ste);
    }
    return outcome;
  }

  /** Install a sanitized STE; when the pool is exhausted the STE stays invalid (fail closed) and the failure outcome is returned. */
  private installSte(sid: number, w: Uint32Array): ShadowOutcome {
    const env = this.env;
    try {
      env.strtab.install(sid, w, this.batch ? noIssue : this.issue);
      return 'ok';
    } catch (e) {
      if (e instanceof PoolExhausted) {
        return env.failures.violate(
          'queue-share',
          `StreamID ${sid}: ${e.message} (the STE stays invalid: fail closed)`,
        );
      }
      if (e instanceof ShadowQueueError)
        env.failures.internal(`installing the STE of StreamID ${sid}: ${e.message}`);
      throw e;
    }
  }
}
