// Entry point: nothing but the login form until a session exists; then the console.

import { Api } from "./api";
import { ConsoleApp } from "./app";
import { clearSession, fromAnswer, loadSession, saveSession, type Session } from "./auth";
import { showLogin } from "./ui/login";
import "./styles.css";

const root = document.getElementById("root")!;
const api = new Api();
let app: ConsoleApp | null = null;

async function boot(message = ""): Promise<void> {
  let session: Session | null = loadSession();
  if (session) {
    api.token = session.token;
    try {
      session.role = (await api.me()).role;
    } catch {
      session = null;
    }
  }
  if (!session) {
    clearSession();
    api.token = null;
    session = await showLogin(root, api, message);
    saveSession(session);
    api.token = session.token;
  }
  const current = new ConsoleApp(root, api, session);
  app = current;
  // the access token lives minutes: renew it before it ends, and whenever an answer says
  // it ended; a refused renewal (account disabled or changed) ends the session
  let renewing: Promise<boolean> | null = null;
  let timer: number | undefined;
  const renew = (): Promise<boolean> =>
    (renewing ??= (async () => {
      try {
        const fresh = fromAnswer(await api.refresh(session!.refreshToken), session!.username);
        session = fresh;
        saveSession(fresh);
        api.token = fresh.token;
        schedule();
        return true;
      } catch {
        return false;
      } finally {
        renewing = null;
      }
    })());
  const schedule = () => {
    clearTimeout(timer);
    const due = Math.max(5_000, session!.expiresAt - Date.now() - 60_000);
    timer = window.setTimeout(() => void renew(), due);
  };
  api.renew = renew;
  schedule();
  const leave = (msg: string) => {
    if (app !== current) return; // several 401s at once: leave once
    app = null;
    clearTimeout(timer);
    api.renew = async () => false;
    current.stop();
    clearSession();
    api.token = null;
    void boot(msg);
  };
  api.onUnauthorized = () => leave("Your session has ended; please sign in again.");
  current.onLogout = async () => {
    clearTimeout(timer); // no renewal while the server ends the session, tokens and all
    await api.logout(session!.refreshToken);
    leave("");
  };
  try {
    await current.start();
  } catch (e) {
    if (app === current) leave(`The console could not start: ${(e as Error).message}`);
  }
}

void boot();
