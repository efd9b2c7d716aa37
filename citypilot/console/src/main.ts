// Entry point: nothing but the login form until a session exists; then the console.

import { Api } from "./api";
import { ConsoleApp } from "./app";
import { clearSession, loadSession, saveSession, type Session } from "./auth";
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
  const leave = (msg: string) => {
    if (app !== current) return; // several 401s at once: leave once
    app = null;
    current.stop();
    clearSession();
    api.token = null;
    void boot(msg);
  };
  api.onUnauthorized = () => leave("Your session has ended; please sign in again.");
  current.onLogout = () => leave("");
  try {
    await current.start();
  } catch (e) {
    if (app === current) leave(`The console could not start: ${(e as Error).message}`);
  }
}

void boot();
