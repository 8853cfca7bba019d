/**
 * Page ownership, as pKVM's mem_protect keeps it: every physical page has an owner and a
 * sharing state, and every change is an explicit transition that checks its preconditions
 * for every page first and then applies to all of them (all or nothing).
 *
 * States (from the host's side, pKVM's names in brackets):
 *  - host-owned            [PKVM_PAGE_OWNED]          the default for every page
 *  - shared host→hyp       [SHARED_OWNED / BORROWED]  the host still owns and uses it
 *  - shared host→guest     [SHARED_OWNED / BORROWED]
 *  - pinned                a shared page the hyp is using (pin count > 0): cannot be unshared
 *  - hyp-owned             [NOPAGE, owner = hyp]      the host may not touch it
 *  - guest-owned           [NOPAGE, owner = guest]
 *
 * Transitions: donate (host → hyp/guest), reclaim (hyp/guest → host), share, unshare, pin,
 * unpin. Listeners (the host CPU stage-2 and the IOMMU idmap) run after a transition's checks
 * pass; a listener that vetoes (throws) undoes the transition, so nothing is left half done.
 */
import { Probe } from '../../hw/probe.ts';
import { HYP_PROBES } from '../probes.ts';
import { ExpectedError } from '../../hw/expected-error.ts';

export const PAGE = 4096;

export type Owner = 'host' | 'hyp' | `guest:${string}`;

export interface PageState {
  readonly owner: Owner;
  /** who a host-owned page is shared with */
  readonly sharedWith: Owner | null;
  /** hyp pins on a shared page */
  readonly pins: number;
  /** MMIO rather than memory (mapped with blocks in the idmap) */
  readonly mmio: boolean;
}

const HOST_OWNED: PageState = Object.freeze({
  owner: 'host',
  sharedWith: null,
  pins: 0,
  mmio: false,
});

export type Transition = 'donate' | 'reclaim' | 'share' | 'unshare' | 'pin' | 'unpin';

/** An expected outcome; built without a stack (hw/expected-error.ts). */
export class OwnershipError extends ExpectedError {
  constructor(
    readonly transition: Transition,
    readonly pa: number,
    readonly why: string,
  ) {
    super(refusalMessage(transition, pa, why));
    this.name = 'OwnershipError';
  }
}

/**
 * A transition the checks refused (nothing changed): the value the try* transitions return,
 * as pKVM's __pkvm_host_* return -EPERM. Allocated only on a refusal.
 */
export interface OwnershipRefusal {
  readonly transition: Transition;
  readonly pa: number;
  readonly why: string;
}

/** How a refusal reads: `<transition> refused at page 0x…: <why>`. */
export function refusalMessage(transition: Transition, pa: number, why: string): string {
  return `${transition} refused at page 0x${pa.toString(16)}: ${why}`;
}

/** The exception for a refusal, for callers at a boundary that unwinds (scenario steps, the API). */
export function refusalError(r: OwnershipRefusal): OwnershipError {
  return new OwnershipError(r.transition, r.pa, r.why);
}

/** A transition's outcome, thrown as OwnershipError when it was refused. */
function orThrow(r: OwnershipRefusal | null): void {
  if (r !== null) throw refusalError(r);
}

/** What the host may do with a page now (its CPU stage-2 and the idmap follow this). */
export function hostAccess(s: PageState): { read: boolean; write: boolean } {
  const ok = s.owner === 'host';
  return { read: ok, write: ok };
}

export interface OwnershipChange {
  readonly transition: Transition;
  readonly base: number;
  readonly pages: number;
  /** whether the host's access changed (donate/reclaim) */
  readonly hostAccessChanged: boolean;
  /** host access after the change */
  readonly hostCanAccess: boolean;
  readonly mmio: boolean;
}
export type OwnershipListener = (c: OwnershipChange) => void;

/**
 * A check every donation must also pass, after the page states' own: the first page of
 * [base, base + pages × PAGE) that may not leave the host and why, or null. (The paravirtual
 * designs' DMA refcount: a page mapped for DMA cannot be donated, hyp/pv/dma-refcount.ts.)
 */
export type DonationGuard = (base: number, pages: number) => { pa: number; why: string } | null;

export interface OwnedRange {
  base: number;
  size: number;
  state: PageState;
}

export class PageOwnership {
  /** non-default pages only: pfn → state */
  private readonly pages = new Map<number, PageState>();
  private readonly listeners: OwnershipListener[] = [];
  private readonly donationGuards: DonationGuard[] = [];
  /** probe points: each accepted transition (and each undo after a veto), for traces */
  readonly probes = { change: new Probe(HYP_PROBES.ownershipChange) } as const;
  /** transitions applied, by kind */
  readonly counts: Record<Transition, number> = {
    donate: 0,
    reclaim: 0,
    share: 0,
    unshare: 0,
    pin: 0,
    unpin: 0,
  };
  refused = 0;

  onChange(l: OwnershipListener): void {
    this.listeners.push(l);
  }

  /** Add a check donations must pass (a refusal changes nothing, like a page-state refusal). */
  addDonationGuard(g: DonationGuard): void {
    this.donationGuards.push(g);
  }

  state(pa: number): PageState {
    return this.pages.get(Math.floor(pa / PAGE)) ?? HOST_OWNED;
  }

  /** Fast check for the host CPU stage-2: may the host access the page holding `pa`? */
  hostMay(pa: number): boolean {
    const s = this.pages.get(Math.floor(pa / PAGE));
    return s === undefined || s.owner === 'host';
  }

  /**
   * The page frames in [firstPfn, endPfn) the host may not access (owned away from it), in
   * ascending order: the complement of `hostMay` over the range, without visiting every page.
   */
  nonHostPfns(firstPfn: number, endPfn: number): number[] {
    const out: number[] = [];
    this.pages.forEach((s, pfn) => {
      if (pfn >= firstPfn && pfn < endPfn && s.owner !== 'host') out.push(pfn);
    });
    return out.sort((a, b) => a - b);
  }

  /** Pages not in the default state, merged into runs of equal state, by address. */
  ranges(): OwnedRange[] {
    // pages are set a range at a time, so in insertion order they come in runs of consecutive
    // frames sharing one state object: gather those runs, sort the runs (not the pages), then
    // merge neighbours of equal state
    const starts: number[] = [];
    const lens: number[] = [];
    const states: PageState[] = [];
    let n = 0;
    // (forEach: no [key, value] array per page)
    this.pages.forEach((s, pfn) => {
      if (s === HOST_OWNED) return;
      if (n > 0 && states[n - 1] === s && starts[n - 1]! + lens[n - 1]! === pfn) lens[n - 1]!++;
      else {
        starts.push(pfn);
        lens.push(1);
        states.push(s);
        n++;
      }
    });
    const order = Array.from({ length: n }, (_, i) => i);
    order.sort((a, b) => starts[a]! - starts[b]!);
    const out: OwnedRange[] = [];
    for (const i of order) {
      const base = starts[i]! * PAGE;
      const last = out[out.length - 1];
      if (last && last.base + last.size === base && sameState(last.state, states[i]!))
        last.size += lens[i]! * PAGE;
      else out.push({ base, size: lens[i]! * PAGE, state: states[i]! });
    }
    return out;
  }

  /** How many pages each owner holds away from the host, and how many are shared / pinned. */
  summary(): Record<string, number> {
    const r: Record<string, number> = {};
    for (const s of this.pages.values()) {
      if (s === HOST_OWNED) continue;
      const k =
        s.owner !== 'host'
          ? `${s.owner}-owned`
          : s.pins
            ? 'pinned'
            : s.sharedWith
              ? `shared-${s.sharedWith}`
              : 'host';
      r[k] = (r[k] ?? 0) + 1;
    }
    return r;
  }

  // ---- transitions ---------------------------------------------------------------------------

  /** host → `to`: the host loses access. Pages must be host-owned, not shared, not pinned. */
  tryDonate(
    base: number,
    size: number,
    to: Exclude<Owner, 'host'>,
    o: { mmio?: boolean } = {},
  ): OwnershipRefusal | null {
    return this.apply(
      'donate',
      base,
      size,
      (s) => {
        if (s.owner !== 'host') return `owned by ${s.owner}`;
        if (s.sharedWith)
          return `shared with ${s.sharedWith}${s.pins ? ` and pinned ${s.pins}×` : ''}`;
        return null;
      },
      (s) => ({ owner: to, sharedWith: null, pins: 0, mmio: o.mmio ?? s.mmio }),
      true,
      false,
    );
  }

  /** `from` → host: the pages come back to the host. */
  tryReclaim(base: number, size: number, from: Exclude<Owner, 'host'>): OwnershipRefusal | null {
    return this.apply(
      'reclaim',
      base,
      size,
      (s) => (s.owner !== from ? `owned by ${s.owner}, not ${from}` : null),
      (s) => ({ owner: 'host', sharedWith: null, pins: 0, mmio: s.mmio }),
      true,
      true,
    );
  }

  /** host shares with `to`: the host keeps access. Pages must be host-owned and not yet shared. */
  tryShare(base: number, size: number, to: Exclude<Owner, 'host'>): OwnershipRefusal | null {
    return this.apply(
      'share',
      base,
      size,
      (s) => {
        if (s.owner !== 'host') return `owned by ${s.owner}: only host-owned memory can be shared`;
        if (s.sharedWith) return `already shared with ${s.sharedWith}`;
        return null;
      },
      (s) => ({ ...s, sharedWith: to }),
      false,
      true,
    );
  }

  tryUnshare(base: number, size: number, from: Exclude<Owner, 'host'>): OwnershipRefusal | null {
    return this.apply(
      'unshare',
      base,
      size,
      (s) => {
        if (s.owner !== 'host' || s.sharedWith !== from) return `not shared with ${from}`;
        if (s.pins) return `pinned ${s.pins}×`;
        return null;
      },
      (s) => ({ ...s, sharedWith: null }),
      false,
      true,
    );
  }

  /** The hyp pins a page the host shared with it, so it cannot be unshared while in use. */
  tryPin(base: number, size: number): OwnershipRefusal | null {
    return this.apply(
      'pin',
      base,
      size,
      (s) => (s.owner !== 'host' || s.sharedWith !== 'hyp' ? 'not shared with the hyp' : null),
      (s) => ({ ...s, pins: s.pins + 1 }),
      false,
      true,
    );
  }

  tryUnpin(base: number, size: number): OwnershipRefusal | null {
    return this.apply(
      'unpin',
      base,
      size,
      (s) => (s.pins === 0 ? 'not pinned' : null),
      (s) => ({ ...s, pins: s.pins - 1 }),
      false,
      true,
    );
  }

  /** share + pin as one step (pKVM's hyp_pin_shared_mem after a share); nothing changed on a refusal */
  tryShareAndPin(base: number, size: number): OwnershipRefusal | null {
    const r = this.tryShare(base, size, 'hyp');
    if (r !== null) return r;
    const p = this.tryPin(base, size);
    if (p !== null) this.unshare(base, size, 'hyp');
    return p;
  }

  unpinAndUnshare(base: number, size: number): void {
    this.unpin(base, size);
    this.unshare(base, size, 'hyp');
  }

  // the same transitions, throwing OwnershipError on a refusal (for callers that unwind)

  donate(base: number, size: number, to: Exclude<Owner, 'host'>, o: { mmio?: boolean } = {}): void {
    orThrow(this.tryDonate(base, size, to, o));
  }

  reclaim(base: number, size: number, from: Exclude<Owner, 'host'>): void {
    orThrow(this.tryReclaim(base, size, from));
  }

  share(base: number, size: number, to: Exclude<Owner, 'host'>): void {
    orThrow(this.tryShare(base, size, to));
  }

  unshare(base: number, size: number, from: Exclude<Owner, 'host'>): void {
    orThrow(this.tryUnshare(base, size, from));
  }

  pin(base: number, size: number): void {
    orThrow(this.tryPin(base, size));
  }

  unpin(base: number, size: number): void {
    orThrow(this.tryUnpin(base, size));
  }

  shareAndPin(base: number, size: number): void {
    orThrow(this.tryShareAndPin(base, size));
  }

  private apply(
    t: Transition,
    base: number,
    size: number,
    check: (s: PageState) => string | null,
    next: (s: PageState) => PageState,
    accessChanges: boolean,
    hostCanAccess: boolean,
  ): OwnershipRefusal | null {
    if (
      !Number.isSafeInteger(base) ||
      !Number.isSafeInteger(size) ||
      base % PAGE ||
      size % PAGE ||
      size <= 0
    ) {
      this.refused++;
      return {
        transition: t,
        pa: base,
        why: `range 0x${base.toString(16)}+0x${size.toString(16)} is not page aligned`,
      };
    }
    const first = base / PAGE;
    const n = size / PAGE;
    const before: Array<PageState | undefined> = new Array(n);
    for (let i = 0; i < n; i++) {
      const s = this.pages.get(first + i);
      const why = check(s ?? HOST_OWNED);
      if (why) {
        this.refused++;
        return { transition: t, pa: (first + i) * PAGE, why };
      }
      before[i] = s;
    }
    if (t === 'donate') {
      const guards = this.donationGuards;
      for (let i = 0; i < guards.length; i++) {
        const r = guards[i]!(base, n);
        if (r !== null) {
          this.refused++;
          return { transition: t, pa: r.pa, why: r.why };
        }
      }
    }
    // `next` is a pure function of the state, and a run of pages usually shares one state object
    // (the states are frozen): compute it once per distinct state, not once per page
    let lastIn: PageState | null = null;
    let lastOut: PageState = HOST_OWNED;
    for (let i = 0; i < n; i++) {
      const s = before[i] ?? HOST_OWNED;
      if (s !== lastIn) {
        lastIn = s;
        lastOut = next(s);
      }
      this.set(first + i, lastOut);
    }
    const mmio = (before[0] ?? HOST_OWNED).mmio;
    try {
      for (const l of this.listeners)
        l({ transition: t, base, pages: n, hostAccessChanged: accessChanges, hostCanAccess, mmio });
      const pr = this.probes.change;
      if (pr.active)
        pr.fire({
          transition: t,
          base,
          pages: n,
          hostAccessChanged: accessChanges,
          hostCanAccess,
          mmio,
        });
    } catch (e) {
      // a listener vetoed (e.g. the idmap could not be invalidated): undo, so nothing is half
      // done, and pass its error on (another layer's failure, not a refused transition)
      for (let i = 0; i < n; i++) this.set(first + i, before[i] ?? HOST_OWNED);
      if (accessChanges)
        for (const l of this.listeners) {
          try {
            l({
              transition: t === 'donate' ? 'reclaim' : 'donate',
              base,
              pages: n,
              hostAccessChanged: true,
              hostCanAccess: !hostCanAccess,
              mmio,
            });
          } catch {
            /* best effort: the original error is what matters */
          }
        }
      const pr = this.probes.change;
      if (accessChanges && pr.active)
        pr.fire({
          transition: t === 'donate' ? 'reclaim' : 'donate',
          base,
          pages: n,
          hostAccessChanged: true,
          hostCanAccess: !hostCanAccess,
          mmio,
        });
      this.refused++;
      throw e;
    }
    this.counts[t]++;
    return null;
  }

  private set(pfn: number, s: PageState): void {
    if (s.owner === 'host' && !s.sharedWith && !s.pins && !s.mmio) {
      // back to the default: keep the key (deleting from a large Map and re-inserting is slow
      // in V8, and a reshadow shares and unshares the same L2 pages every time)
      if (this.pages.has(pfn)) this.pages.set(pfn, HOST_OWNED);
    } else this.pages.set(pfn, Object.isFrozen(s) ? s : Object.freeze(s));
  }
}

function sameState(a: PageState, b: PageState): boolean {
  return (
    a.owner === b.owner && a.sharedWith === b.sharedWith && a.pins === b.pins && a.mmio === b.mmio
  );
}
