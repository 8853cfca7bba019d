/** The hypervisor could not take the SMMU at boot (or was asked for a design not built). */
export class HypBootError extends Error {
  constructor(why: string) {
    super(`pkvm: SMMU setup failed: ${why}`);
    this.name = 'HypBootError';
  }
}
