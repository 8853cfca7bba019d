/** Human-readable output: results as tables (cli-table3), JSON for machines. */
import Table from 'cli-table3';
import type { RunResult } from '../engine/runner.ts';

export function table(
  head: string[],
  rows: Array<Array<string | number>>,
  colWidths?: Array<number | null>,
  compact = false,
): string {
  const t = new Table({
    head,
    style: { head: [], border: [], compact },
    ...(colWidths ? { colWidths, wordWrap: true } : {}),
  });
  for (const r of rows) t.push(r.map((c) => String(c)));
  return t.toString();
}

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

/** One row per run: the demo and catalog view. */
export function formatSummary(rs: readonly RunResult[]): string {
  return table(
    [
      'scenario',
      'hyp',
      'result',
      'steps',
      'events',
      'commands',
      'hyp: traps / fwd / rejected',
      'panic',
      'isolation',
    ],
    rs.map((r) => [
      r.scenario,
      r.hypMode ?? 'none',
      r.ok ? 'ok' : `FAILED (${r.failed.length})`,
      r.steps + (r.skipped ? ` (+${r.skipped} skipped)` : ''),
      r.events.map((e) => e.type).join(' ') || '-',
      String(r.stats.commands),
      r.hyp ? `${r.hyp.traps} / ${r.hyp.commandsForwarded} / ${r.hyp.commandsRejected}` : '-',
      r.hyp?.panics.length ? r.hyp.panics.map((p) => p.rule).join(',') : '-',
      r.isolation ? (r.isolation.ok ? 'holds' : `BREACHED (${r.isolation.breaches.length})`) : '-',
    ]),
    [null, null, null, null, 28, null, null, null, null],
  );
}

export function formatResult(r: RunResult): string {
  const lines: string[] = [];
  lines.push(
    `scenario ${r.scenario} [hyp ${r.hypMode ?? 'none'}]: ${r.ok ? 'ok' : 'FAILED'} (${r.steps} steps${r.skipped ? `, ${r.skipped} skipped after a panic` : ''}, ${r.failed.length} failed, ${r.events.length} events)`,
  );
  if (r.hyp) {
    const h = r.hyp;
    lines.push(
      `hypervisor ${h.policy} (failure policy ${h.failure}): ${h.traps} traps, ${h.commandsForwarded} commands forwarded, ${h.commandsRejected} rejected, ${h.hypCommands} own commands, ${h.reshadows} reshadows, ${h.shadowPages} shadow pages, ${h.poolPages} pool pages`,
    );
    if (Object.keys(h.violations).length)
      lines.push(
        `  violations: ${Object.entries(h.violations)
          .map(([k, v]) => `${k}×${v}`)
          .join(', ')}`,
      );
    for (const p of h.panics) lines.push(`  PANIC [${p.rule}]: ${p.reason}`);
  }
  if (r.isolation) {
    lines.push(
      `isolation: ${r.isolation.ok ? 'holds' : `BREACHED (${r.isolation.breaches.length})`}`,
    );
    for (const b of r.isolation.breaches.slice(0, 8)) lines.push(`  ${b.detail}`);
  }
  if (r.guests?.length) {
    lines.push('guests:');
    lines.push(
      table(
        [
          'guest',
          'vmid',
          'vSMMU traps',
          'guest commands',
          'physical commands',
          'events injected',
          'stage-2 faults kept',
          'state',
        ],
        r.guests.map((g) => [
          g.name,
          g.vmid,
          g.traps,
          g.commands,
          String(g.stats.physCommands),
          g.eventsInjected,
          String(g.stats.s2Faults),
          g.alive ? 'running' : 'destroyed',
        ]),
      ),
    );
  }
  if (r.translations?.length) {
    lines.push('DMA translations (IOVA → IPA → PA):');
    lines.push(
      table(
        ['actor', 'device', 'sid', 'pSID', 'access', 'IOVA', 'IPA', 'PA'],
        r.translations.map((t) => [
          t.actor,
          t.device,
          t.sid,
          t.psid,
          t.access,
          t.iova,
          t.ipa ?? '-',
          t.pa ?? `fault: ${t.fault}`,
        ]),
      ),
    );
  }
  if (r.teardowns?.length) {
    for (const t of r.teardowns) {
      lines.push(`teardown of ${t.guest}:`);
      lines.push(
        table(
          ['phase', 'DMA', 'isolation'],
          t.phases.map((p) => [p.phase, p.dma ?? '-', p.isolation ? 'holds' : 'BREACHED']),
        ),
      );
    }
  }
  if (r.failed.length) {
    lines.push(
      table(
        ['step', 'op', 'expected', 'actual'],
        r.failed.map((f) => [
          f.step,
          f.op,
          show(f.expected),
          show(f.actual) + (f.message ? ` — ${f.message}` : ''),
        ]),
      ),
    );
  }
  if (r.events.length) {
    lines.push('events written to the event queue:');
    lines.push(
      table(
        ['#', 'type', 'sid', 'ssid', 'fields'],
        r.events.map((e, i) => [
          i,
          e.type,
          e.sid,
          e.ssid ?? '-',
          Object.entries(e.fields)
            .filter(([k]) => !['StreamID', 'SSV', 'SubstreamID'].includes(k))
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
        ]),
      ),
    );
  }
  return lines.join('\n');
}
