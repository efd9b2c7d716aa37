// The session: a bearer token and the role it carries, kept for the browser tab only
// (sessionStorage), never in a cookie. Roles: viewer < operator < admin.

export interface Session {
  token: string;
  username: string;
  role: string;
  expiresAt: number;
  /** performance.now() when the user pressed "Sign in" (timing of the first render). */
  loginStartedAt?: number;
}

const KEY = "citypilot.session";
const RANK: Record<string, number> = { viewer: 1, operator: 2, admin: 3 };

export function loadSession(): Session | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) ?? "null") as Session | null;
    return s && s.token && s.expiresAt > Date.now() ? s : null;
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
