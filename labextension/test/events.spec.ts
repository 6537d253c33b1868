/**
 * The event-stream client: events handed on once, in seq order, across reconnects.
 *
 * The browser's WebSocket is replaced by a scripted one (`ServerConnection` settings take
 * the WebSocket class); the client, its Poll and its dedupe are the real ones.
 */
import { ServerConnection } from '@jupyterlab/services';

import { AgentEvent, EventStream, MAX_RECONNECT_MS, RECONNECT_MS } from '../src/api';

class ScriptedSocket {
  static opened: ScriptedSocket[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((message: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  closedByClient = false;

  constructor(readonly url: string) {
    ScriptedSocket.opened.push(this);
  }

  open(): void {
    this.onopen?.();
  }

  send(...events: Partial<AgentEvent>[]): void {
    for (const event of events) {
      this.onmessage?.({ data: JSON.stringify(event) });
    }
  }

  /** The server (or the network) closes the connection. */
  drop(): void {
    this.onclose?.();
  }

  close(): void {
    this.closedByClient = true;
  }
}

const settings = ServerConnection.makeSettings({
  baseUrl: 'http://127.0.0.1:8888/',
  wsUrl: 'ws://127.0.0.1:8888/',
  token: 'secret',
  appendToken: true,
  WebSocket: ScriptedSocket as unknown as typeof WebSocket
});

function status(seq: number): Partial<AgentEvent> {
  return { type: 'status_changed', status: 'running', seq, reason: '' } as Partial<AgentEvent>;
}

describe('EventStream', () => {
  let seen: number[];
  let connected: boolean[];
  let stream: EventStream;

  beforeEach(() => {
    jest.useFakeTimers();
    ScriptedSocket.opened = [];
    seen = [];
    connected = [];
  });

  afterEach(() => {
    stream?.dispose();
    jest.useRealTimers();
  });

  const start = async (since = 0): Promise<ScriptedSocket> => {
    stream = new EventStream(
      'abc123',
      since,
      event => seen.push(event.seq),
      up => connected.push(up),
      settings
    );
    await jest.advanceTimersByTimeAsync(1);
    return ScriptedSocket.opened[ScriptedSocket.opened.length - 1];
  };

  it('connects with since and the token', async () => {
    const socket = await start(7);
    expect(ScriptedSocket.opened).toHaveLength(1);
    expect(socket.url).toBe(
      'ws://127.0.0.1:8888/kernelagent/api/sessions/abc123/events?since=7&token=secret'
    );
  });

  it('hands on each event once, dropping repeated and older seqs', async () => {
    const socket = await start();
    socket.open();
    socket.send(status(1), status(2), status(2), status(1), status(3));
    expect(seen).toEqual([1, 2, 3]);
    expect(stream.lastSeq).toBe(3);
    expect(connected).toEqual([true]);
  });

  it('reconnects after a drop from the last seq it saw, without repeating events', async () => {
    const first = await start();
    first.open();
    first.send(status(1), status(2));
    first.drop();
    expect(connected).toEqual([true, false]);
    await jest.advanceTimersByTimeAsync(RECONNECT_MS + 10);
    expect(ScriptedSocket.opened).toHaveLength(2);
    const second = ScriptedSocket.opened[1];
    expect(second.url).toContain('since=2');
    second.open();
    second.send(status(2), status(3), status(4)); // the server resends from since
    expect(seen).toEqual([1, 2, 3, 4]);
  });

  it('backs off while the server cannot be reached', async () => {
    jest.spyOn(Math, 'random').mockReturnValue(0.999); // the longest wait of each draw
    let socket = await start();
    const gaps: number[] = [];
    for (let failure = 0; failure < 6; failure++) {
      const before = ScriptedSocket.opened.length;
      socket.drop(); // it never opened
      let waited = 0;
      while (ScriptedSocket.opened.length === before && waited <= MAX_RECONNECT_MS + 1000) {
        await jest.advanceTimersByTimeAsync(50);
        waited += 50;
      }
      expect(ScriptedSocket.opened).toHaveLength(before + 1);
      gaps.push(waited);
      socket = ScriptedSocket.opened[before];
    }
    expect(gaps[0]).toBeGreaterThanOrEqual(RECONNECT_MS);
    for (let index = 1; index < gaps.length; index++) {
      expect(gaps[index]).toBeGreaterThanOrEqual(gaps[index - 1]);
    }
    expect(gaps[gaps.length - 1]).toBeGreaterThanOrEqual(MAX_RECONNECT_MS - 50); // capped
    expect(gaps[gaps.length - 1]).toBeLessThanOrEqual(MAX_RECONNECT_MS + 50);
    // once a connection opens again, a later drop reconnects soon
    socket.open();
    socket.drop();
    await jest.advanceTimersByTimeAsync(RECONNECT_MS + 10);
    expect(ScriptedSocket.opened).toHaveLength(8);
    jest.restoreAllMocks();
  });

  it('stops for good when disposed', async () => {
    const socket = await start();
    socket.open();
    stream.dispose();
    expect(socket.closedByClient).toBe(true);
    await jest.advanceTimersByTimeAsync(MAX_RECONNECT_MS * 2);
    expect(ScriptedSocket.opened).toHaveLength(1);
    expect(stream.isDisposed).toBe(true);
  });
});
