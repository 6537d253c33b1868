/**
 * The client for kernelagent's server extension: REST calls under
 * `{baseUrl}kernelagent/api/` and the per-session event WebSocket.
 *
 * The event and request types are generated from `kernelagent/events.py` and
 * `kernelagent/server/requests.py` (`scripts/panel_types.py`).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';

// --- events, request bodies and names: generated from kernelagent's pydantic models ---

import type {
  AgentEvent,
  CellKind,
  ICellResultRequest,
  ICreateSessionRequest,
  IMemory,
  INotebookSessionRequest,
  SessionStatus
} from './generated/schema';

export * from './generated/schema';
export type { IError as IErrorEvent } from './generated/schema';

// --- REST payloads -------------------------------------------------------------------

export interface IPendingApproval {
  cell_id: string;
  kind: CellKind | 'host_tool';
  code: string;
  code_sha256: string;
  reason: string;
}

export interface ISessionInfo {
  id: string;
  status: SessionStatus;
  reason: string;
  task: string;
  created_at: number;
  updated_at: number;
  steps: number;
  cells: number;
  input_tokens: number;
  output_tokens: number;
  /** Relative to the server root when the notebook is inside it. */
  notebook: string;
  /** The notebook open in JupyterLab the session works in, if it does. */
  in_notebook?: string | null;
  pending: IPendingApproval | null;
}

export type ReplayOutcome = 'matched' | 'diverged' | 'error' | 'skipped';

export interface IReplayCell {
  cell: number;
  cell_id: string;
  outcome: ReplayOutcome;
  reason: string;
  diff: string;
  seconds: number;
}

export interface IReplayReport {
  notebook: string;
  matched: number;
  diverged: number;
  error: number;
  skipped: number;
  seconds: number;
  cells: IReplayCell[];
}

/** A failed API call, with the server's `error` and `hint` when it sent them. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly hint: string = ''
  ) {
    super(message);
  }
}

/** Statuses after which the session runs no more until it gets a new instruction. */
export const FINISHED_STATUSES: ReadonlySet<SessionStatus> = new Set([
  'paused',
  'completed',
  'failed',
  'interrupted'
]);

// --- REST ----------------------------------------------------------------------------

const API_PATH = 'kernelagent/api';

async function request<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_PATH, path);
  if (init.body !== undefined) {
    init.headers = { 'Content-Type': 'application/json', ...init.headers };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(`cannot reach the server: ${error}`, 0);
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body?.error ?? body?.message ?? `${response.status} ${response.statusText}`;
    throw new ApiError(String(message), response.status, String(body?.hint ?? ''));
  }
  return body as T;
}

function post<T>(path: string, body: unknown = {}): Promise<T> {
  return request<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

const sessionPath = (id: string, ...rest: string[]): string =>
  URLExt.join('sessions', encodeURIComponent(id), ...rest);

export async function listSessions(): Promise<ISessionInfo[]> {
  const body = await request<{ sessions: ISessionInfo[] }>('sessions');
  return body.sessions;
}

export async function createSession(options: ICreateSessionRequest): Promise<ISessionInfo> {
  const body = await post<{ session: ISessionInfo }>('sessions', options);
  return body.session;
}

/** Start a session that works in a notebook open in JupyterLab. */
export async function createNotebookSession(
  options: INotebookSessionRequest
): Promise<ISessionInfo> {
  const body = await post<{ session: ISessionInfo }>('notebook-sessions', options);
  return body.session;
}

/** The outputs of a cell the panel ran in the notebook, for the waiting agent. */
export function postCellResult(
  id: string,
  cellId: string,
  result: ICellResultRequest
): Promise<void> {
  return post(sessionPath(id, 'cells', encodeURIComponent(cellId)), result);
}

export function getSession(id: string): Promise<{ session: ISessionInfo; events: AgentEvent[] }> {
  return request(sessionPath(id));
}

export function sendMessage(id: string, instruction: string): Promise<void> {
  return post(sessionPath(id, 'messages'), { instruction });
}

/** Approve the pending action; `code` is the edited code when the person changed it. */
export function approve(id: string, code?: string): Promise<void> {
  return post(sessionPath(id, 'approve'), code === undefined ? {} : { code });
}

export function reject(id: string, reason?: string): Promise<void> {
  return post(sessionPath(id, 'reject'), reason ? { reason } : {});
}

export function stop(id: string): Promise<void> {
  return post(sessionPath(id, 'stop'));
}

export function replay(path: string): Promise<IReplayReport> {
  return post('replay', { path });
}

/** The user's memories, newest first; or those matching `query`, best first. */
export async function listMemories(query = '', limit = 100): Promise<IMemory[]> {
  const params: Record<string, string | number> = { limit };
  if (query) {
    params.q = query;
  }
  const body = await request<{ memories: IMemory[] }>(
    'memories' + URLExt.objectToQueryString(params)
  );
  return body.memories;
}

/** Delete a memory: later sessions no longer see it. Returns the memory deleted. */
export async function forgetMemory(id: string): Promise<IMemory> {
  const body = await request<{ memory: IMemory }>(URLExt.join('memories', encodeURIComponent(id)), {
    method: 'DELETE'
  });
  return body.memory;
}

// --- events WebSocket ----------------------------------------------------------------

/** Reconnecting after a dropped socket: soon, then (while it fails) backing off. */
export const RECONNECT_MS = 500;
export const MAX_RECONNECT_MS = 30_000; // (a Poll backs off to at least 30 s)

/**
 * A session's live events over `WS sessions/{id}/events?since=N`.
 *
 * The server sends every event with `seq > since`, then the live ones. When the socket
 * closes (server restart, network blip) it reconnects with `since` = the last seq seen,
 * so no event is lost or repeated; an event at or below that seq is dropped. The
 * reconnecting is a `Poll` (@lumino/polling): each tick is one connection, which resolves
 * when an open socket closes (reconnect after `RECONNECT_MS`) and rejects when the socket
 * could not open (the poll backs off, up to `MAX_RECONNECT_MS`). `dispose()` stops it.
 */
export class EventStream implements IDisposable {
  private socket: WebSocket | null = null;
  private readonly poll: Poll;
  private disposed = false;

  constructor(
    readonly sessionId: string,
    private seq: number,
    private readonly onEvent: (event: AgentEvent) => void,
    private readonly onConnectionChange: (connected: boolean) => void = () => {},
    private readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    this.poll = new Poll({
      auto: false,
      factory: () => this.connectOnce(),
      frequency: { interval: RECONNECT_MS, backoff: true, max: MAX_RECONNECT_MS },
      standby: 'never',
      name: `kernelagent:events:${sessionId}`
    });
    // Connect now; the poll takes over when this connection ends. (Started by itself, a
    // poll's first failure would retry at once: its backoff grows from the last interval.)
    void this.connectOnce().then(
      () => this.poll.schedule({ interval: RECONNECT_MS, phase: 'resolved' }),
      () => this.poll.schedule({ interval: RECONNECT_MS, phase: 'rejected' })
    );
  }

  /** The seq of the last event handed on. */
  get lastSeq(): number {
    return this.seq;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    this.poll.dispose();
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close();
      this.socket = null;
    }
  }

  private url(): string {
    const { wsUrl, token, appendToken } = this.settings;
    let url = URLExt.join(wsUrl, API_PATH, sessionPath(this.sessionId, 'events'));
    url += `?since=${this.seq}`;
    // Like JupyterLab's kernel sockets: the token only when cookies will not do.
    if (token && appendToken) {
      url += `&token=${encodeURIComponent(token)}`;
    }
    return url;
  }

  /** One connection, until its socket closes. */
  private connectOnce(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.disposed) {
        resolve();
        return;
      }
      const socket = new this.settings.WebSocket(this.url());
      this.socket = socket;
      let opened = false;
      socket.onopen = () => {
        opened = true;
        this.onConnectionChange(true);
      };
      socket.onmessage = message => this.receive(message.data);
      socket.onclose = () => {
        this.socket = null;
        this.onConnectionChange(false);
        if (opened) {
          resolve();
        } else {
          reject(new Error(`the events socket of session ${this.sessionId} did not open`));
        }
      };
    });
  }

  private receive(data: unknown): void {
    let event: AgentEvent;
    try {
      event = JSON.parse(data as string);
    } catch {
      return;
    }
    if (typeof event.seq === 'number') {
      if (event.seq <= this.seq) {
        return;
      }
      this.seq = event.seq;
    }
    this.onEvent(event);
  }
}
