// The error a call throws, of the class the test expects; anything else fails the test.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function thrown<E extends Error>(fn: () => unknown, kind: abstract new (...args: any[]) => E): E {
  try {
    fn();
  } catch (e) {
    if (e instanceof kind) return e;
    throw e;
  }
  throw new Error(`expected a ${kind.name}, nothing was thrown`);
}
