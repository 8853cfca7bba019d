/** Human-readable output: results as tables (cli-table3), JSON for machines. */
import Table from 'cli-table3';
import type { RunResult } from './runner.ts';

export function table(head: string[], rows: Array<Array<string | number>>, colWidths?: Array<number | null>): string {
  const t = new Table({ head, style: { head: [], border: [] }, ...(colWidths ? { colWidths, wordWrap: true } : {}) });
  for (const r of rows) t.push(r.map((c) => String(c)));
  return t.toString();
}

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

export function formatResult(r: RunResult): string {
  const lines: string[] = [];
  lines.push(`scenario ${r.scenario}: ${r.ok ? 'ok' : 'FAILED'} (${r.steps} steps, ${r.failed.length} failed, ${r.events.length} events)`);
  if (r.failed.length) {
    lines.push(table(['step', 'op', 'expected', 'actual'], r.failed.map((f) => [f.step, f.op, show(f.expected), show(f.actual) + (f.message ? ` — ${f.message}` : '')])));
  }
  if (r.events.length) {
    lines.push('events written to the event queue:');
    lines.push(
      table(
        ['#', 'type', 'sid', 'ssid', 'fields'],
        r.events.map((e, i) => [i, e.type, e.sid, e.ssid ?? '-', Object.entries(e.fields).filter(([k]) => !['StreamID', 'SSV', 'SubstreamID'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' ')]),
      ),
    );
  }
  return lines.join('\n');
}
