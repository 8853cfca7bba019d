/**
 * The CLI's exit status, shared by the command modules (run, decode, explain, fuzz…):
 * 0 success, 1 an expectation failed (or a breach was found), 2 bad input.
 */
export const cliStatus = { code: 0 };

/** Raise the exit status (it never goes down during one invocation). */
export function exitWith(code: number): void {
  if (code > cliStatus.code) cliStatus.code = code;
}
