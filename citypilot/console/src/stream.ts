// The live stream: one WebSocket, reconnected by itself with back-off after the server
// goes away. Each (re)connection is announced with onConnected so the app can catch up
// (reload its snapshots) while frames already arrive.

import type { CommandInfo } from "./api";
import type { Change } from "./data";

export type ConnectionState = "connecting" | "live" | "reconnecting" | "offline";

export interface Frame {
  type: "changes";
  changes: Change[];
  deleted: string[];
  /** Device commands that changed state since the last frame. */
  commands?: CommandInfo[];
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 5_000;

export class LiveStream {
  state: ConnectionState = "connecting";
  /** When the next attempt happens, while reconnecting (epoch ms). */
  retryAt = 0;
  /** How many times the stream came back after losing the server. */
  reconnects = 0;
  onState: (state: ConnectionState) => void = () => {};
  onFrame: (frame: Frame) => void = () => {};
  /** The server said hello: (re)load snapshots now. ``again`` is false the first time. */
  onConnected: (again: boolean) => void = () => {};
  /** The server refused or ended the token: resolve true to connect again (renewed). */
  onAuthError: () => Promise<boolean> = async () => false;

  private ws: WebSocket | null = null;
  private timer: number | undefined;
  private failures = 0;
  private everConnected = false;
  private stopped = false;

  constructor(
    private url: () => string,
    private protocols: () => string[] = () => [],
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close();
    this.ws = null;
    this.setState("offline");
  }

  private connect(): void {
    if (this.stopped) return;
    this.setState(this.everConnected ? "reconnecting" : "connecting");
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url(), this.protocols());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    let refused = false;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data as string);
      if (msg.type === "changes") this.onFrame(msg as Frame);
      else if (msg.type === "hello") {
        const again = this.everConnected;
        this.everConnected = true;
        if (again) this.reconnects++;
        this.failures = 0;
        this.setState("live");
        this.onConnected(again);
      } else if (msg.type === "error") {
        const status = msg.error?.status;
        if (status === 401 || status === 403) {
          refused = true;
          void this.onAuthError().then((again) => {
            if (again && !this.stopped) this.scheduleRetry();
          });
        }
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (refused || this.stopped) this.setState("offline");
      else this.scheduleRetry();
    };
  }

  private scheduleRetry(): void {
    const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.failures);
    const delay = base * (0.8 + Math.random() * 0.4);
    this.failures++;
    this.retryAt = Date.now() + delay;
    this.setState(this.everConnected ? "reconnecting" : "connecting");
    this.timer = window.setTimeout(() => this.connect(), delay);
  }

  private setState(state: ConnectionState): void {
    if (state === this.state && state !== "reconnecting") return;
    this.state = state;
    this.onState(state);
  }
}
