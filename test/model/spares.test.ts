/**
 * The arbiter's spare rule (model/driver/spares.ts), shared by our server's arbiter and the simulator's
 * model of it: a spawn takes a ready spare before a loading one, never one taken or retired, and the
 * spares are topped up to the target.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chooseSpare, sparesToStart } from '../../model/driver/spares.ts';

interface TestSpare {
  readonly name: number;
  readonly ready: boolean;
  readonly free: boolean;
}

const spareList = fc.array(fc.record({ ready: fc.boolean(), free: fc.boolean() }), { maxLength: 8 }).map((xs) => xs.map((x, name): TestSpare => ({ name, ...x })));
const isFree = (s: TestSpare) => s.free;

describe('chooseSpare: what a spawn takes', () => {
  it('the first free ready spare; with none ready, the first free one still loading; with none free, none', () => {
    fc.assert(
      fc.property(spareList, (spares) => {
        const free = spares.filter(isFree);
        const expected = free.find((s) => s.ready) ?? free[0] ?? null;
        expect(chooseSpare(spares, isFree)).toBe(expected);
      }),
    );
  });

  it('a ready spare is taken before one that started loading earlier', () => {
    const loading: TestSpare = { name: 1, ready: false, free: true };
    const ready: TestSpare = { name: 2, ready: true, free: true };
    expect(chooseSpare([loading, ready], isFree)).toBe(ready);
    expect(chooseSpare([{ ...ready, free: false }, loading], isFree)).toBe(loading);
  });
});

describe('sparesToStart: topping the spares up', () => {
  it('starts what brings the free spares to the target, and none above it', () => {
    fc.assert(
      fc.property(spareList, fc.nat(4), (spares, target) => {
        const free = spares.filter(isFree).length;
        const n = sparesToStart(spares, isFree, target);
        expect(n).toBeGreaterThanOrEqual(0);
        expect(free + n).toBe(Math.max(target, free));
      }),
    );
  });
});
