// The session: a short-lived access token, the refresh token that renews it and the role,
// kept for the browser tab only (sessionStorage), never in a cookie. Roles: viewer <
// operator < admin.

import type { TokenAnswer } from "./api";

export interface Session {
  token: string;
  username: string;
  role: string;
  expiresAt: number;
  /** Renews the access token (short-lived) until it too ends or is revoked. */
  refreshToken: string;
  refreshExpiresAt: number;
  /** performance.now() when the user pressed "Sign in" (timing of the first render). */
  loginStartedAt?: number;
}

const KEY = "citypilot.session";
const RANK: Record<string, number> = { viewer: 1, operator: 2, admin: 3 };

export function loadSession(): Session | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) ?? "null") as Session | null;
    return s && s.refreshToken && s.refreshExpiresAt > Date.now() ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session): void {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession(): void {
  sessionStorage.removeItem(KEY);
}

/** Whether the role may change things (operator and above). */
export function canWrite(role: string): boolean {
  return (RANK[role] ?? 0) >= RANK.operator;
}

/** The session after a login or a refresh answer. */
export function fromAnswer(answer: TokenAnswer, username: string): Session {
  const now = Date.now();
  return {
    token: answer.access_token,
    username,
    role: answer.role,
    expiresAt: now + answer.expires_in * 1000,
    refreshToken: answer.refresh_token,
    refreshExpiresAt: now + answer.refresh_expires_in * 1000,
  };
}
