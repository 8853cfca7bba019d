/**
 * The host driver's stat groups (host layer), declared once: each counter with what it counts
 * (hw/probe.ts). The driver increments the record made from its group (`cmdq.stats`).
 */
import { statGroup } from '../hw/probe.ts';

export const HOST_STATS = {
  cmdq: statGroup('host.cmdq', 'host', "the driver's command queue producer", {
    batches: 'PROD writes publishing a batch of commands',
    commands: 'commands published, CMD_SYNCs included',
    syncs: 'batches ended by a CMD_SYNC the driver waited for',
    errorsRecovered:
      'command errors recovered (the command at CONS replaced by a CMD_SYNC, GERRORN acknowledged)',
    consPolls: 'CMDQ_CONS reads while waiting for a CMD_SYNC (without MSIPOLL)',
  }),
} as const;
