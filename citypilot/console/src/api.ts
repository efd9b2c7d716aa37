// The CityPilot HTTP API, as the console uses it: bearer token on every call,
// RFC 9457 problem details turned into ApiError, 401 reported once to the app.

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  field?: string;
}

/** An HTTP error from the API, with its problem details when the server sent some. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(problem.detail || problem.title || `HTTP ${status}`);
  }
}

export interface AttributeSpec {
  kind: string;
  value: string;
  unit?: string | null;
  minimum?: number | null;
  maximum?: number | null;
  choices?: string[] | null;
  description?: string;
}

/** A command a type declares (GET /api/v1/types). */
export interface CommandSpec {
  description: string;
  parameters: Record<string, AttributeSpec>;
  confirms: Record<string, unknown>;
  timeoutS: number;
  destructive: boolean;
  destructiveWhen?: Record<string, unknown[]>;
}

/** A device command and how far it got (POST/GET /api/v1/commands, stream frames). */
export interface CommandInfo {
  id: string;
  entityId: string;
  command: string;
  args: Record<string, unknown>;
  state: string;
  answer: string | null;
  expected: Record<string, unknown>;
}

/** One entry of an incident's timeline. */
export interface TimelineEntry {
  at: string;
  by: string;
  action: string;
  detail: string;
  refs?: string[];
}

/** A unit sent to an incident: its ETA and the route it drives. */
export interface Assignment {
  etaSeconds?: number;
  eta?: string;
  route?: { type: string; coordinates: [number, number][] };
  [key: string]: unknown;
}

/** An incident as /api/v1/incidents shows it (the timeline only when read alone). */
export interface AlarmView {
  id: string;
  rule: string;
  entity: string;
  entityType: string;
  severity: "critical" | "high" | "medium" | "low";
  state: string;
  message: string;
  count: number;
  raisedAt: string;
  lastRaisedAt: string;
  acknowledged: { by: string; at: string } | null;
  shelved: { by: string; until: string; reason: string } | null;
  suppressed: { by: string; key: string } | null;
  location: { type: "Point"; coordinates: [number, number] } | null;
}

export interface AlarmsAnswer {
  total: number;
  counts: Record<string, number>;
  attention: Record<string, number>;
  alarms: AlarmView[];
}

export interface AlarmFigures {
  alarms: number;
  perOperatorPer10Min: number;
  peakPer10Min: number;
  floodPercent: number;
  top10SharePercent: number;
  chattering: string[];
  stale: string[];
  prioritySplit: Record<string, number>;
  meetsTargets: { perOperatorPer10Min: boolean; floodPercent: boolean; chattering: boolean };
}

export interface RuleView {
  id: string;
  version: number;
  enabled: boolean;
  status: {
    firings: number;
    errors: number;
    lastErrors: { at: string; entity: string | null; reason: string }[];
    stopped: { at: string; reason: string } | null;
  };
}

export interface Incident {
  id: string;
  type: string;
  severity: string;
  status: string;
  location: { type: "Point"; coordinates: [number, number] } | null;
  affectedArea: { type: string; coordinates: unknown } | null;
  description: string | null;
  source: string | null;
  reportedBy: string | null;
  reportedAt: string | null;
  updatedAt: string | null;
  municipality: string | null;
  assignments: Record<string, Assignment>;
  links: Record<string, string[]>;
  prioritySavedSeconds: number;
  timeline?: TimelineEntry[];
}

/** A unit the recommendation ranks for an incident, by road travel time. */
export interface Candidate {
  unit: string;
  unitType: string;
  kind: string;
  callSign: string | null;
  etaSeconds: number;
  distanceMetres: number;
  route: { type: string; coordinates: [number, number][] };
}

/** A road closure (GET /api/v1/closures). */
export interface Closure {
  id: string;
  status: string;
  name: string | null;
  reason: string | null;
  incident: string | null;
  endsAt: string | null;
  geometry: { type: string; coordinates: unknown } | null;
}

export interface TypeInfo {
  name: string;
  department: string;
  description?: string;
  attributes: Record<string, AttributeSpec>;
  commands?: Record<string, CommandSpec>;
}

/** Column-oriented layer of one type, as GET /api/v1/map/entities/{type} answers it. */
export interface TypeColumns {
  type: string;
  department: string;
  count: number;
  ids: string[];
  lon: (number | null)[];
  lat: (number | null)[];
  modifiedAt: (string | null)[];
  attrs: Record<string, unknown[]>;
}

export interface TokenAnswer {
  access_token: string;
  refresh_token: string;
  refresh_expires_in: number;
  role: string;
  expires_in: number;
}

/** Concise NGSI-LD entity (options=keyValues). */
export type ConciseEntity = { id: string; type: string } & Record<string, unknown>;

/** Normalised NGSI-LD entity. */
export type NormalizedEntity = { id: string; type: string } & Record<
  string,
  { type: string; value?: unknown; object?: string; observedAt?: string; unitCode?: string } | string
>;

/** Counts of a mode's commands by how far they got. */
export interface ModeProgress {
  total: number;
  confirmed: number;
  underWay: number;
  failed: number;
}

/** A time a mode was entered (GET /api/v1/modes "active"). */
export interface ModeActivation {
  id: string;
  name: string;
  title: string;
  level: number;
  levelName: string;
  state: string;
  scope: { kind: string; municipality?: string; zone?: string };
  reason: string;
  enteredBy: string;
  enteredAt: string;
  progress: ModeProgress;
  restore?: { outcomes: Record<string, number>; progress: ModeProgress };
}

/** A mode the city knows. */
export interface ModeInfo {
  name: string;
  title: string;
  description: string;
  level: number;
  levelName: string;
  active: boolean;
  steps: { id: string; description: string }[];
}

export interface ModesAnswer {
  level: number;
  levelName: string;
  active: ModeActivation[];
  modes: ModeInfo[];
}

export class Api {
  /** Called once per 401 answer that a renewal could not mend (revoked or ended session). */
  onUnauthorized: (() => void) | null = null;
  /** Get a new access token with the refresh token (true when it worked). */
  renew: () => Promise<boolean> = async () => false;

  constructor(public token: string | null = null) {}

  private headers(extra?: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { Accept: "application/json", ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** Fetch JSON; throws ApiError with the problem details on an HTTP error. */
  async request<T>(path: string, init: RequestInit = {}, renewed = false): Promise<T> {
    const res = await fetch(path, {
      ...init,
      headers: this.headers(init.headers as Record<string, string> | undefined),
    });
    // an expired access token: renew it once with the refresh token, then ask again
    if (res.status === 401 && this.token && !renewed && (await this.renew())) {
      return this.request(path, init, true);
    }
    if (!res.ok) {
      let problem: Problem = { status: res.status };
      try {
        problem = await res.json();
      } catch {
        /* not JSON: keep the status */
      }
      if (res.status === 401 && this.token && this.onUnauthorized) this.onUnauthorized();
      throw new ApiError(res.status, problem);
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Log in with the OAuth2 password form. */
  async login(username: string, password: string): Promise<TokenAnswer> {
    const body = new URLSearchParams({ username, password });
    return this.request<TokenAnswer>("/api/v1/auth/token", { method: "POST", body });
  }

  /** Exchange the refresh token for new tokens (OAuth2 refresh grant). */
  async refresh(refreshToken: string): Promise<TokenAnswer> {
    const res = await fetch("/api/v1/auth/refresh", {
      method: "POST",
      headers: { Accept: "application/json" },
      body: new URLSearchParams({ refresh_token: refreshToken }),
    });
    if (!res.ok) throw new ApiError(res.status, { status: res.status });
    return (await res.json()) as TokenAnswer;
  }

  /** End the session of the refresh token on the server (its tokens are refused from
   * now); a failure changes nothing for the caller, who forgets the session anyway. */
  async logout(refreshToken: string): Promise<void> {
    try {
      await fetch("/api/v1/auth/logout", {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams({ refresh_token: refreshToken }),
      });
    } catch {
      /* offline: the session ends when its refresh token does */
    }
  }

  me(): Promise<{ username: string; role: string }> {
    return this.request("/api/v1/auth/me");
  }

  types(): Promise<TypeInfo[]> {
    return this.request("/api/v1/types");
  }

  /** Every entity of a type as columns. ``attrs`` names the attributes wanted (a server
   * that does not filter sends them all, which is fine too). */
  typeColumns(type: string, attrs?: string[]): Promise<TypeColumns> {
    const query = attrs?.length ? `?attrs=${encodeURIComponent(attrs.join(","))}` : "";
    return this.request(`/api/v1/map/entities/${encodeURIComponent(type)}${query}`);
  }

  async mapLayers(): Promise<string[]> {
    return (await this.request<{ layers: string[] }>("/api/v1/map/layers")).layers;
  }

  entity(id: string): Promise<NormalizedEntity> {
    return this.request(`/ngsi-ld/v1/entities/${encodeURIComponent(id)}`);
  }

  /** Entities of some types whose name or address matches a pattern (NGSI-LD q regex). */
  search(types: string[], pattern: string, limit = 20): Promise<ConciseEntity[]> {
    const q = `name~=${JSON.stringify(pattern)}|address~=${JSON.stringify(pattern)}`;
    const params = new URLSearchParams({
      type: types.join(","),
      q,
      options: "keyValues",
      attrs: "name,address",
      limit: String(limit),
    });
    return this.request(`/ngsi-ld/v1/entities?${params}`);
  }

  history(
    id: string,
    attrs: string[],
    from: Date,
    to: Date,
    bucket = "15m",
  ): Promise<{ attrs: Record<string, [string, number][]> }> {
    const params = new URLSearchParams({
      attrs: attrs.join(","),
      from: from.toISOString(),
      to: to.toISOString(),
      bucket,
      agg: "avg",
    });
    return this.request(`/api/v1/history/${encodeURIComponent(id)}?${params}`);
  }

  /** Send a command to an entity's device (operator and above); answers at once (202). */
  command(id: string, command: string, args: Record<string, unknown>, reason: string): Promise<CommandInfo> {
    return this.postJson(`/api/v1/entities/${encodeURIComponent(id)}/commands`, { command, args, reason });
  }

  /** The operational level, the active modes and every mode. */
  modes(): Promise<ModesAnswer> {
    return this.request("/api/v1/modes");
  }

  enterMode(name: string, scope: Record<string, string>, reason: string): Promise<ModeActivation> {
    return this.postJson(`/api/v1/modes/${encodeURIComponent(name)}/enter`, { scope, reason });
  }

  leaveMode(name: string, reason: string): Promise<ModeActivation> {
    return this.postJson(`/api/v1/modes/${encodeURIComponent(name)}/leave`, { reason });
  }

  /** The municipalities of the metropole (id and name), for a mode's scope. */
  municipalities(): Promise<ConciseEntity[]> {
    const params = new URLSearchParams({ type: "Municipality", options: "keyValues", attrs: "name", limit: "1000" });
    return this.request(`/ngsi-ld/v1/entities?${params}`);
  }

  /** Incidents, newest first; ``status`` a comma-separated filter. */
  incidents(status?: string): Promise<Incident[]> {
    const query = status ? `?status=${encodeURIComponent(status)}` : "";
    return this.request(`/api/v1/incidents${query}`);
  }

  incident(id: string): Promise<Incident> {
    return this.request(`/api/v1/incidents/${encodeURIComponent(id)}`);
  }

  /** Open an incident at a point (operator and above). */
  reportIncident(body: {
    type: string;
    severity: string;
    location: { type: "Point"; coordinates: [number, number] };
    description: string;
  }): Promise<Incident> {
    return this.postJson("/api/v1/incidents", body);
  }

  /** The nearest available units by road travel time. */
  async recommendation(id: string, count = 3): Promise<Candidate[]> {
    const path = `/api/v1/incidents/${encodeURIComponent(id)}/recommendation?count=${count}`;
    return (await this.request<{ units: Candidate[] }>(path)).units;
  }

  async dispatch(id: string, units: string[]): Promise<Incident> {
    const path = `/api/v1/incidents/${encodeURIComponent(id)}/dispatch`;
    return (await this.postJson<{ incident: Incident }>(path, { units })).incident;
  }

  setIncidentStatus(id: string, status: string, note = ""): Promise<Incident> {
    return this.postJson(`/api/v1/incidents/${encodeURIComponent(id)}/status`, { status, note });
  }

  closures(): Promise<Closure[]> {
    return this.request("/api/v1/closures");
  }

  alarms(params: URLSearchParams): Promise<AlarmsAnswer> {
    return this.request(`/api/v1/alarms?${params}`);
  }

  alarmFigures(): Promise<AlarmFigures> {
    return this.request("/api/v1/alarms/figures");
  }

  rules(): Promise<{ rules: RuleView[]; loadErrors: { source: string; detail: string }[] }> {
    return this.request("/api/v1/rules");
  }

  acknowledgeAlarm(id: string): Promise<AlarmView> {
    return this.postJson(`/api/v1/alarms/${encodeURIComponent(id)}/acknowledge`, {});
  }

  shelveAlarm(id: string, duration: number, reason: string): Promise<AlarmView> {
    return this.postJson(`/api/v1/alarms/${encodeURIComponent(id)}/shelve`, { duration, reason });
  }

  unshelveAlarm(id: string): Promise<AlarmView> {
    return this.postJson(`/api/v1/alarms/${encodeURIComponent(id)}/unshelve`, {});
  }

  private postJson<T>(path: string, body: unknown): Promise<T> {
    return this.request(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  /** The WebSocket URL of the live stream for these types (no credential in it). */
  streamUrl(types: string[]): string {
    const url = new URL("/api/v1/stream", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (types.length) url.searchParams.set("types", types.join(","));
    return url.toString();
  }

  /** The stream's subprotocols: the token travels as one, never in the URL (logs). */
  streamProtocols(): string[] {
    return ["citypilot.stream", `bearer.${this.token ?? ""}`];
  }
}
