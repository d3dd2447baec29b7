/**
 * Per-thread record of the seqs already seen: everything <= `contiguous`, plus a set of
 * seqs above it (there is a hole below them while the set is non-empty).
 */
export class SeqTracker {
  private _contiguous = 0;
  private readonly above = new Set<number>();

  /** Every seq <= this has been seen (or is known, see `markThrough`). */
  get contiguous(): number {
    return this._contiguous;
  }

  /** Highest seq seen. */
  get last(): number {
    let max = this._contiguous;
    for (const s of this.above) if (s > max) max = s;
    return max;
  }

  /** true while some seq below the highest seen one is missing. */
  get hasGap(): boolean {
    return this.above.size > 0;
  }

  /** Seqs above `contiguous` already seen, ascending. */
  aboveSeqs(): number[] {
    return [...this.above].sort((a, b) => a - b);
  }

  /** Was `seq` seen already? */
  has(seq: number): boolean {
    return seq <= this._contiguous || this.above.has(seq);
  }

  /** Records `seq`; true when it is new, false for a duplicate (or a non-positive seq). */
  accept(seq: number): boolean {
    if (!Number.isInteger(seq) || seq < 1 || this.has(seq)) return false;
    if (seq === this._contiguous + 1) {
      this._contiguous = seq;
      this.advance();
    } else {
      this.above.add(seq);
    }
    return true;
  }

  /** Everything <= `seq` counts as seen (loaded over REST, from a cache, or pruned). */
  markThrough(seq: number): void {
    if (seq <= this._contiguous) return;
    this._contiguous = seq;
    for (const s of this.above) if (s <= seq) this.above.delete(s);
    this.advance();
  }

  private advance(): void {
    while (this.above.delete(this._contiguous + 1)) this._contiguous += 1;
  }
}
