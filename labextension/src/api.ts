/**
 * The client for kernelagent's server extension: REST calls under
 * `{baseUrl}kernelagent/api/` and the per-session event WebSocket.
 *
 * The event types mirror `kernelagent/events.py` (one discriminated union on `type`).
 */
import { URLExt } from '@jupyterlab/coreutils';
import * as nbformat from '@jupyterlab/nbformat';
import { ServerConnection } from '@jupyterlab/services';

// --- events (kernelagent/events.py) -------------------------------------------------

export type SessionStatus =
  | 'starting'
  | 'running'
  | 'awaiting_approval'
  | 'paused'
  | 'completed'
  | 'failed'
  | 'interrupted';

export type CellStatus =
  | 'ok'
  | 'error'
  | 'timeout'
  | 'kernel_died'
  | 'interrupted'
  | 'rejected';

export type CellKind = 'python' | 'shell';

export interface IUsage {
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  requests: number;
}

interface IEventBase {
  session_id: string;
  seq: number;
  time: number;
  /** Set on the events of parallel attempts 2, 3, ... (their notebooks record them). */
  attempt?: number | null;
}

export interface ISessionStarted extends IEventBase {
  type: 'session_started';
  task: string;
  model: string;
  sandbox: string;
  image: string | null;
  workspace: string;
  notebook_path: string;
}

export interface IStatusChanged extends IEventBase {
  type: 'status_changed';
  status: SessionStatus;
  reason: string;
}

export interface IUserMessage extends IEventBase {
  type: 'user_message';
  text: string;
}

export interface IAssistantText extends IEventBase {
  type: 'assistant_text';
  text: string;
}

export interface IAssistantTextDelta extends IEventBase {
  type: 'assistant_text_delta';
  delta: string;
}

export interface ICellStarted extends IEventBase {
  type: 'cell_started';
  cell_id: string;
  tool_call_id: string;
  kind: CellKind;
  code: string;
}

export interface ICellOutput extends IEventBase {
  type: 'output';
  cell_id: string;
  output: nbformat.IOutput;
}

export interface ICellFinished extends IEventBase {
  type: 'cell_finished';
  cell_id: string;
  status: CellStatus;
  outputs: nbformat.IOutput[];
  execution_count: number | null;
  started_at: number;
  finished_at: number;
  truncated: boolean;
  detail: string;
}

export interface IApprovalRequested extends IEventBase {
  type: 'approval_requested';
  cell_id: string;
  tool_call_id: string;
  kind: CellKind;
  code: string;
  code_sha256: string;
  reason: string;
}

export interface IApprovalDecided extends IEventBase {
  type: 'approval_decided';
  cell_id: string;
  decision: 'approved' | 'edited' | 'rejected';
  decided_by: string;
  code: string;
  reason: string;
}

export interface IKernelRestarted extends IEventBase {
  type: 'kernel_restarted';
  reason: string;
  restored_cells: number;
}

/** One request through the sandbox's egress proxy (sandboxes with allow_net only). */
export interface IEgressRecord {
  method: string;
  host: string;
  port: number;
  decision: 'allowed' | 'refused';
  reason?: string;
  path?: string;
  status?: number;
  bytes_up: number;
  bytes_down: number;
  time: number;
  duration: number;
}

export interface IEgressRequest extends IEventBase {
  type: 'egress';
  cell_id: string | null;
  request: IEgressRecord;
}

export interface IUsageUpdated extends IEventBase {
  type: 'usage';
  usage: IUsage;
  total: IUsage;
}

export interface IErrorEvent extends IEventBase {
  type: 'error';
  message: string;
  hint: string;
}

/** A model request failed in transport (empty or broken-off stream, reset, 502/503/504,
 * timeout) and is retried: not a model turn. */
export interface IModelRetrying extends IEventBase {
  type: 'model_retrying';
  retry: number;
  retries: number;
  reason: string;
  delay: number;
}

export interface ISessionFinished extends IEventBase {
  type: 'session_finished';
  status: SessionStatus;
  answer: string | null;
  reason: string;
  usage: IUsage;
}

export interface IActionSkipped extends IEventBase {
  type: 'action_skipped';
  tool_call_id: string;
  kind: CellKind;
  code: string;
  code_sha256: string;
  same_as_cell: string;
  repeats: 'failed' | 'just_ran';
  error: string;
  next_temperature: number | null;
}

export interface IAnswerReviewed extends IEventBase {
  type: 'answer_reviewed';
  answer: string;
  verdict: 'accepted' | 'no_evidence' | 'not_shown' | 'before_output' | 'verify';
  detail: string;
}

export interface IAttemptStarted extends IEventBase {
  type: 'attempt_started';
  number: number;
  of: number;
  temperature: number | null;
  notebook_path: string;
}

export interface IAttemptFinished extends IEventBase {
  type: 'attempt_finished';
  number: number;
  status: SessionStatus;
  answer: string | null;
  grounded: boolean;
  reason: string;
  last_error: string;
  notebook_path: string;
}

export interface IVoteDecided extends IEventBase {
  type: 'vote_decided';
  chosen: number | null;
  answer: string | null;
  agreeing: number[];
  attempts: number;
  majority: boolean;
  summary: string;
  notebooks: string[];
}

export type AgentEvent =
  | ISessionStarted
  | IStatusChanged
  | IUserMessage
  | IAssistantText
  | IAssistantTextDelta
  | ICellStarted
  | ICellOutput
  | ICellFinished
  | IApprovalRequested
  | IApprovalDecided
  | IKernelRestarted
  | IEgressRequest
  | IUsageUpdated
  | IErrorEvent
  | IActionSkipped
  | IAnswerReviewed
  | IAttemptStarted
  | IAttemptFinished
  | IVoteDecided
  | ISessionFinished
  | IModelRetrying;

// --- REST payloads -------------------------------------------------------------------

export interface IPendingApproval {
  cell_id: string;
  kind: CellKind;
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
  pending: IPendingApproval | null;
}

export type ApprovalMode = 'never' | 'shell' | 'always';

export interface ICreateSessionRequest {
  task: string;
  data: string[];
  model?: string;
  base_url?: string;
  api?: string;
  sandbox?: string;
  approve?: ApprovalMode;
  max_steps?: number;
  /** Parallel attempts; the answer most of them agree on wins. */
  attempts?: number;
  /** HOST[:PORT] destinations; the server must permit them (request_network_allow). */
  allow_net?: string[];
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
    const message =
      body?.error ?? body?.message ?? `${response.status} ${response.statusText}`;
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

export async function createSession(
  options: ICreateSessionRequest
): Promise<ISessionInfo> {
  const body = await post<{ session: ISessionInfo }>('sessions', options);
  return body.session;
}

export function getSession(
  id: string
): Promise<{ session: ISessionInfo; events: AgentEvent[] }> {
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

// --- events WebSocket ----------------------------------------------------------------

/**
 * A session's live events over `WS sessions/{id}/events?since=N`.
 *
 * The server sends every event with `seq > since`, then the live ones. When the socket
 * closes (server restart, network blip) it reconnects with `since` = the last seq seen,
 * so no event is lost or repeated. Closing it with `dispose()` stops the reconnecting.
 */
export class EventStream {
  private socket: WebSocket | null = null;
  private retryTimer: number | undefined;
  private retryDelay = 500;
  private disposed = false;

  constructor(
    readonly sessionId: string,
    private lastSeq: number,
    private readonly onEvent: (event: AgentEvent) => void,
    private readonly onConnectionChange: (connected: boolean) => void = () => {},
    private readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    this.connect();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    this.disposed = true;
    window.clearTimeout(this.retryTimer);
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close();
      this.socket = null;
    }
  }

  private url(): string {
    const { wsUrl, token, appendToken } = this.settings;
    let url = URLExt.join(wsUrl, API_PATH, sessionPath(this.sessionId, 'events'));
    url += `?since=${this.lastSeq}`;
    // Like JupyterLab's kernel sockets: the token only when cookies will not do.
    if (token && appendToken) {
      url += `&token=${encodeURIComponent(token)}`;
    }
    return url;
  }

  private connect(): void {
    if (this.disposed) {
      return;
    }
    const socket = new this.settings.WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => {
      this.retryDelay = 500;
      this.onConnectionChange(true);
    };
    socket.onmessage = message => {
      let event: AgentEvent;
      try {
        event = JSON.parse(message.data as string);
      } catch {
        return;
      }
      if (typeof event.seq === 'number') {
        if (event.seq <= this.lastSeq) {
          return;
        }
        this.lastSeq = event.seq;
      }
      this.onEvent(event);
    };
    socket.onclose = () => {
      this.socket = null;
      this.onConnectionChange(false);
      if (!this.disposed) {
        this.retryTimer = window.setTimeout(() => this.connect(), this.retryDelay);
        this.retryDelay = Math.min(this.retryDelay * 2, 10000);
      }
    };
  }
}
