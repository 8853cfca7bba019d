/** A list of observers with an unsubscribe handle (the bus and the SMMU writer share it). */
export class Observers<T> {
  private readonly list: Array<(e: T) => void> = [];

  get active(): boolean {
    return this.list.length !== 0;
  }

  add(o: (e: T) => void): () => void {
    this.list.push(o);
    return () => {
      const i = this.list.indexOf(o);
      if (i >= 0) this.list.splice(i, 1);
    };
  }

  notify(e: T): void {
    for (const o of this.list) o(e);
  }
}
