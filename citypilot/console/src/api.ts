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

export class Api {
  /** Called once per 401 answer (expired or revoked token). */
  onUnauthorized: (() => void) | null = null;

  constructor(public token: string | null = null) {}

  private headers(extra?: Record<string, string>): Record<string, string> {
    const h: Record<string, string> = { Accept: "application/json", ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** Fetch JSON; throws ApiError with the problem details on an HTTP error. */
  async request<T>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await fetch(path, {
      ...init,
      headers: this.headers(init.headers as Record<string, string> | undefined),
    });
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
    return this.request(`/api/v1/entities/${encodeURIComponent(id)}/commands`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ command, args, reason }),
    });
  }

  /** The WebSocket URL of the live stream for these types. */
  streamUrl(types: string[]): string {
    const url = new URL("/api/v1/stream", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token ?? "");
    if (types.length) url.searchParams.set("types", types.join(","));
    return url.toString();
  }
}
