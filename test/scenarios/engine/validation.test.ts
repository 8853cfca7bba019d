import { describe, expect, it } from 'vitest';
import { parseScenarioText, ScenarioError } from '../../../scenarios/engine/loader.ts';
import { runScenario } from '../../../scenarios/engine/runner.ts';

function problems(text: string, file = 'x.json'): string[] {
  try {
    parseScenarioText(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    expect((e as Error).message.startsWith(`${file}: invalid scenario`)).toBe(true);
    return (e as ScenarioError).problems;
  }
  throw new Error('expected the scenario to be rejected');
}

describe('scenario validation', () => {
  it('accepts the raw step vocabulary exactly as written in the issue', () => {
    const sc = parseScenarioText(
      JSON.stringify({
        machine: {
          hyp: 'none',
          ramSize: '0x40000000',
          smmu: {},
          devices: [{ name: 'nic', sid: 8 }],
        },
        steps: [
          { op: 'write', actor: 'host', addr: '0x9050020', size: 4, value: '0x0' },
          { op: 'read', actor: 'host', addr: '0x9050024', size: 4, expect: '0x0', mask: '0xf' },
          { op: 'memwrite', actor: 'host', addr: '0x40001000', hex: '03000000' },
          {
            op: 'memread',
            actor: 'host',
            addr: '0x40001000',
            len: 16,
            expect: '03000000000000000000000000000000',
          },
          { op: 'dma', sid: 8, ssid: 0, iova: '0x1000', access: 'write', len: 4, expect: 'ok' },
          { op: 'expectEvent', type: 'C_BAD_STE', sid: 8 },
        ],
      }),
      'raw.json',
    );
    expect(sc.steps.map((s) => s.op)).toEqual([
      'write',
      'read',
      'memwrite',
      'memread',
      'dma',
      'expectEvent',
    ]);
    expect(sc.steps[0]!.addr).toBe(0x9050020);
    expect(sc.steps[1]!.mask).toBe(0xfn);
  });

  it('names the file, the step index and the field of every problem at once', () => {
    const p = problems(
      JSON.stringify({
        machine: { smmu: { bogus: 1 } },
        steps: [
          { op: 'write', actor: 'host', addr: '0x9050020', size: 3, value: '0x0' },
          { op: 'read', actor: 'cpu', addr: 'zz', size: 4 },
          { op: 'nope' },
          { op: 'memwrite', actor: 'host', addr: 1, hex: 'abc' },
        ],
      }),
      'bad.json',
    );
    expect(p).toEqual([
      'machine: field "smmu": unknown field(s) "bogus"',
      'step 0 (op "write"): field "size": size must be 1, 2, 4 or 8',
      'step 1 (op "read"): field "actor": actor must be "host", "hyp" or "guest:<name>"',
      'step 1 (op "read"): field "addr": expected a decimal number or a "0x…" string, got "zz"',
      expect.stringMatching(/^step 2: field "op": unknown op "nope"/),
      expect.stringMatching(/^step 3 \(op "memwrite"\): field "hex": expected hex bytes/),
    ]);
  });

  it('rejects unknown step fields, 64-bit values as unsafe numbers, and broken JSON/YAML', () => {
    expect(
      problems(
        JSON.stringify({
          steps: [{ op: 'write', actor: 'host', addr: 1, size: 8, value: 2 ** 60, extra: 1 }],
        }),
      ),
    ).toEqual([
      'step 0 (op "write"): field "value": expected a non-negative integer, got 1152921504606847000 (write values above 2^53 as "0x…" strings)',
      'step 0 (op "write"): unknown field(s) "extra"',
    ]);
    expect(problems('{"steps": [', 'broken.json')[0]).toMatch(/^not valid JSON/);
    expect(problems('steps: [ {op: write', 'broken.yaml')[0]).toMatch(/^not valid YAML/);
  });

  it('reads YAML scenarios', () => {
    const sc = parseScenarioText(
      'steps:\n  - {op: read, actor: host, addr: "0x9050000", size: 4}\n',
      'y.yaml',
    );
    expect(sc.steps).toHaveLength(1);
  });

  it('reports a machine the SMMU cannot be built with as a scenario error', () => {
    const sc = parseScenarioText(
      JSON.stringify({ machine: { smmu: { sidSize: 40 } }, steps: [] }),
      'm.json',
    );
    expect(() => runScenario(sc)).toThrow(
      /m\.json: invalid scenario\n {2}machine: invalid SMMU features: sidSize 40 is outside 0\.\.32/,
    );
  });
});
