/**
 * `smmulab explain <scenario> --sid N [--ssid M] --iova X [--access read|write] [--at-step K]
 * [--hyp none|pkvm|pkvm-v6] [--cold] [--json]`: replay a scenario to step K and show, step by
 * step, how the SMMU decides one DMA (scenarios/inspect/explain.ts).
 */
import type { CommandModule } from 'yargs';
import { loadScenarios, type HypMode } from '../engine/loader.ts';
import {
  explainDma,
  formatExplain,
  parseNumberArg,
  ExplainInputError,
} from '../inspect/explain.ts';
import { cliStatus, exitWith } from './status.ts';
import { cliIo } from './io.ts';

interface ExplainArgs {
  scenario: string;
  sid: string;
  ssid?: string;
  iova: string;
  access: 'read' | 'write';
  'at-step'?: string;
  hyp?: HypMode;
  cold: boolean;
  priv: boolean;
  instr: boolean;
  json: boolean;
}

export const explainCommand: CommandModule<object, ExplainArgs> = {
  command: 'explain <scenario>',
  describe:
    'replay a scenario to a step, then show how the SMMU decides one DMA: the STE, the CD, every stage-1/stage-2 descriptor read, the PA or the fault and its event record',
  builder: (y) =>
    y
      .positional('scenario', {
        type: 'string',
        demandOption: true,
        describe: 'built-in name (see `smmulab list`) or a .json/.yaml scenario file',
      })
      .option('sid', {
        type: 'string',
        demandOption: true,
        describe: 'StreamID of the DMA (decimal or 0x hex)',
      })
      .option('ssid', {
        type: 'string',
        describe:
          'SubstreamID (PASID); without it the DMA has no SubstreamID, unless the scenario declares a default one for that device',
      })
      .option('iova', {
        type: 'string',
        demandOption: true,
        describe: 'input address (decimal or 0x hex, up to 64 bits)',
      })
      .option('access', {
        choices: ['read', 'write'] as const,
        default: 'read' as const,
        describe: 'the access',
      })
      .option('priv', { type: 'boolean', default: false, describe: 'a privileged access' })
      .option('instr', { type: 'boolean', default: false, describe: 'an instruction fetch' })
      .option('at-step', {
        type: 'string',
        describe:
          'replay steps 0..K-1 first (default: all steps); K=0 explains on the machine as built, before any step',
      })
      .option('hyp', {
        choices: ['none', 'pkvm', 'pkvm-v6'] as const,
        describe:
          "run under this hypervisor (default: the scenario's first variant); under pkvm the hardware walks the hypervisor's shadow stream table, and that is what is shown",
      })
      .option('cold', {
        type: 'boolean',
        default: false,
        describe:
          'empty the SMMU configuration caches and IOTLB first, to see the full walk instead of "IOTLB hit: no walk" (a debugging aid: the model\'s invalidate-all is called directly, as CFGI_ALL + TLBI_NSNH_ALL + TLBI_EL2_ALL would do, without going through a command queue)',
      })
      .option('json', {
        type: 'boolean',
        default: false,
        describe:
          'print the explanation as one JSON object: {scenario, hypMode, atStep, totalSteps, replay, cold, dma, outcome, event, reads, notes, tree}',
      })
      .epilog(
        'The DMA is translated only: no data moves. It really reaches the SMMU after the replay, so it may fill the IOTLB and the configuration caches and write an event record, which is shown. Exit status: 0 when the explanation was produced (whether the DMA faults or not), 2 for bad input.',
      ) as never,
  handler: (a) => {
    // yargs has already reported bad arguments (a missing --sid, say) and set exit status 2
    if (cliStatus.code >= 2) return;
    try {
      const scs = loadScenarios(a.scenario);
      if (scs.length !== 1)
        throw new ExplainInputError(
          '<scenario>',
          `"${a.scenario}" is a catalog of ${scs.length} scenarios; explain takes one (a file of the catalog)`,
        );
      const sc = scs[0]!;
      const sid = Number(parseNumberArg('--sid', a.sid, 32));
      const ssid = a.ssid !== undefined ? Number(parseNumberArg('--ssid', a.ssid, 20)) : undefined;
      const iova = parseNumberArg('--iova', a.iova, 64);
      const atStep =
        a['at-step'] !== undefined
          ? Number(parseNumberArg('--at-step', a['at-step'], 32))
          : undefined;
      const res = explainDma(sc, {
        sid,
        ...(ssid !== undefined ? { ssid } : {}),
        iova,
        access: a.access,
        priv: a.priv,
        instr: a.instr,
        ...(atStep !== undefined ? { atStep } : {}),
        ...(a.hyp ? { hyp: a.hyp } : {}),
        cold: a.cold,
      });
      cliIo.out.write((a.json ? JSON.stringify(res, null, 2) : formatExplain(res)) + '\n');
    } catch (e) {
      if (e instanceof ExplainInputError) {
        cliIo.err.write(`smmulab explain: ${e.message}\n`);
        exitWith(2);
        return;
      }
      throw e; // ScenarioError (unknown scenario, invalid file): reported by main with exit status 2
    }
  },
};
