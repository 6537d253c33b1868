/**
 * One session, live: what the person asked, what the model said, each cell it ran with
 * its outputs, approval cards, the answer; and the session's buttons (Stop, Open
 * notebook, Replay) and a follow-up box once it has finished.
 *
 * It loads the session's events with `GET sessions/{id}`, then follows the WebSocket
 * from the last seq it rendered. Every event goes through `handle()`.
 */
import { CodeEditor } from '@jupyterlab/codeeditor';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { TranslationBundle } from '@jupyterlab/translation';
import { historyIcon, notebookIcon, stopIcon } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import { Panel, Widget } from '@lumino/widgets';

import * as api from './api';
import { AgentEvent, FINISHED_STATUSES, ISessionInfo, SessionStatus } from './api';
import { IApprovalActions } from './approval-card';
import { button, errorText, h } from './dom';
import { FollowUpBox } from './follow-up';
import { markdownWidget } from './render';
import { ReplayView } from './replay-view';
import { Timeline } from './timeline';
import { attemptNote, ENGLISH, statusBadge } from './session-labels';

export { statusBadge, statusLabel } from './session-labels';

export interface ISessionViewOptions {
  rendermime: IRenderMimeRegistry;
  languages: IEditorLanguageRegistry;
  openNotebook: (path: string) => void;
  /** The element that scrolls, to keep the newest event in view. */
  scrollHost: () => HTMLElement;
  /** JupyterLab's inline editor factory, for editing a pending action's code. */
  editorFactory?: CodeEditor.Factory | null;
  /** The panel's strings (defaults to English). */
  trans?: TranslationBundle;
  /** How to stop a session (a notebook session interrupts its notebook's kernel too). */
  stopSession?: (id: string) => Promise<void>;
}

export interface IStatusChange {
  sessionId: string;
  status: SessionStatus;
}

export class SessionView extends Panel {
  private sessionId: string | null = null;
  private info: ISessionInfo | null = null;
  private status: SessionStatus | null = null;
  private stream: api.EventStream | null = null;
  private lastSeq = 0;
  private loadCount = 0;
  private readonly statusChangedSignal = new Signal<this, IStatusChange>(this);
  private readonly loadedSignal = new Signal<this, ISessionInfo>(this);

  // the header
  private readonly titleNode = h('div', { class: 'jp-KernelAgent-sessionTitle' });
  private readonly badgeSlot = h('span', {});
  private readonly metaNode = h('span', { class: 'jp-KernelAgent-muted' });
  private readonly usageNode = h('span', { class: 'jp-KernelAgent-muted' });
  private readonly connectionNode = h('span', { class: 'jp-KernelAgent-connection' });
  private readonly stopButton: HTMLButtonElement;
  private readonly openButton: HTMLButtonElement;
  private readonly replayButton: HTMLButtonElement;
  // the body
  private readonly timeline: Timeline;
  private readonly replayView: ReplayView;
  private readonly followUp: FollowUpBox;

  private readonly trans: TranslationBundle;

  constructor(private readonly options: ISessionViewOptions) {
    super();
    const trans = (this.trans = options.trans ?? ENGLISH);
    this.timeline = new Timeline({
      rendermime: options.rendermime,
      languages: options.languages,
      editorFactory: options.editorFactory,
      trans
    });
    this.replayView = new ReplayView(trans);
    this.addClass('jp-KernelAgent-session');

    this.stopButton = button({
      label: trans.__('Stop'),
      icon: stopIcon,
      kind: 'warn',
      title: trans.__('Interrupt the running cell and stop the session'),
      onClick: () => void this.stop()
    });
    this.openButton = button({
      label: trans.__('Open notebook'),
      icon: notebookIcon,
      title: trans.__('Open the notebook this session is recorded in'),
      onClick: () => this.openNotebook()
    });
    this.replayButton = button({
      label: trans.__('Replay'),
      icon: historyIcon,
      title: trans.__('Re-run the notebook in a fresh sandbox and compare every output'),
      onClick: () => void this.replay()
    });
    const header = new Widget({
      node: h(
        'div',
        { class: 'jp-KernelAgent-sessionHeader' },
        this.titleNode,
        h(
          'div',
          { class: 'jp-KernelAgent-sessionStatus' },
          this.badgeSlot,
          this.metaNode,
          this.usageNode,
          this.connectionNode
        ),
        h(
          'div',
          { class: 'jp-KernelAgent-actions' },
          this.stopButton,
          this.openButton,
          this.replayButton
        )
      )
    });

    this.followUp = new FollowUpBox(trans, text => this.sendFollowUp(text));

    this.addWidget(header);
    this.addWidget(this.timeline);
    this.addWidget(this.followUp);
    this.addWidget(this.replayView);
    this.hide();
  }

  /** Emitted when the shown session's status changes (the list refreshes on it). */
  get statusChanged(): ISignal<this, IStatusChange> {
    return this.statusChangedSignal;
  }

  /** Emitted when a session's record has loaded. */
  get loaded(): ISignal<this, ISessionInfo> {
    return this.loadedSignal;
  }

  get currentId(): string | null {
    return this.sessionId;
  }

  dispose(): void {
    this.stream?.dispose();
    super.dispose();
  }

  /** Show a session: its events so far, then live ones. */
  async load(id: string): Promise<void> {
    const load = ++this.loadCount;
    this.reset();
    this.sessionId = id;
    this.titleNode.textContent = this.trans.__('Loading…');
    this.show();
    let session: ISessionInfo;
    let events: AgentEvent[];
    try {
      ({ session, events } = await api.getSession(id));
    } catch (error) {
      if (load === this.loadCount) {
        this.titleNode.textContent = this.trans.__(
          'Could not load session %1: %2',
          id,
          errorText(error)
        );
      }
      return;
    }
    if (load !== this.loadCount) {
      return; // another session was chosen meanwhile
    }
    this.setInfo(session);
    this.loadedSignal.emit(session);
    for (const event of events) {
      this.handle(event);
    }
    // The record knows what the log may not (e.g. a run whose server process died).
    this.setStatus(session.status);
    this.scrollToBottom();
    this.stream = new api.EventStream(
      id,
      this.lastSeq,
      event => this.handle(event),
      connected => this.setConnected(connected)
    );
  }

  /** Render one event. Events at or below the last seq seen are ignored. */
  handle(event: AgentEvent): void {
    if (event.seq) {
      if (event.seq <= this.lastSeq) {
        return;
      }
      this.lastSeq = event.seq;
    }
    const stick = this.isNearBottom();
    this.render(event);
    if (stick) {
      this.scrollToBottom();
    }
  }

  private render(event: AgentEvent): void {
    if (event.attempt && event.attempt > 1) {
      // Another attempt's own events: its notebook has them; the view shows how it ends.
      if (event.type === 'attempt_started' || event.type === 'attempt_finished') {
        this.timeline.addNote(attemptNote(event, this.trans));
      }
      return;
    }
    switch (event.type) {
      case 'attempt_started':
      case 'attempt_finished':
        this.timeline.addNote(attemptNote(event, this.trans));
        break;
      case 'vote_decided':
        this.timeline.addNote(this.trans.__('Vote: %1', event.summary));
        break;
      case 'action_skipped':
        this.timeline.addNote(
          event.repeats === 'failed'
            ? this.trans.__('Not run: the same code already failed (%1).', event.error)
            : this.trans.__('Not run: the same code just ran; its output was shown again.')
        );
        break;
      case 'session_started':
        this.metaNode.textContent = `${event.model} · ${event.sandbox}`;
        break;
      case 'status_changed':
        this.setStatus(event.status);
        break;
      case 'user_message':
        this.timeline.endLiveText();
        this.timeline.addNode(h('div', { class: 'jp-KernelAgent-user' }, event.text));
        break;
      case 'assistant_text_delta':
        this.timeline.appendLiveText(event.delta);
        break;
      case 'assistant_text':
        this.timeline.endLiveText();
        this.timeline.addItem(
          markdownWidget(this.options.rendermime, event.text),
          'jp-KernelAgent-assistant'
        );
        break;
      case 'cell_started':
        this.timeline.endLiveText();
        this.timeline.addCell(event);
        break;
      case 'output':
        this.timeline.cells.get(event.cell_id)?.addOutput(event.output);
        break;
      case 'cell_finished':
        this.timeline.cells.get(event.cell_id)?.finish(event);
        break;
      case 'display_updated':
        this.timeline.cells.get(event.cell_id)?.setOutputs(event.outputs);
        break;
      case 'approval_requested':
        this.timeline.endLiveText();
        this.timeline.addApproval(event, this.approvalActions());
        break;
      case 'approval_decided':
        this.timeline.approvals.get(event.cell_id)?.decided(event);
        break;
      case 'kernel_restarted':
        this.timeline.addNote(
          this.trans.__('Kernel restarted: %1', event.reason) +
            (event.restored_cells
              ? ' ' + this.trans.__('(%1 cells re-run to restore state)', event.restored_cells)
              : '')
        );
        break;
      case 'egress':
        if (event.cell_id) {
          this.timeline.cells.get(event.cell_id)?.addEgress(event.request);
        }
        break;
      case 'model_retrying':
        this.timeline.endLiveText(); // the partial reply of a broken stream is dropped
        this.timeline.addNote(
          this.trans.__(
            'model server busy, retrying %1/%2 (%3)',
            event.retry,
            event.retries,
            event.reason
          )
        );
        break;
      case 'usage':
        this.setUsage(event.total.input_tokens, event.total.output_tokens);
        break;
      case 'error':
        this.timeline.addNode(
          h(
            'div',
            { class: 'jp-KernelAgent-error' },
            event.message,
            event.hint ? h('div', { class: 'jp-KernelAgent-hint' }, event.hint) : null
          )
        );
        break;
      case 'session_finished':
        this.timeline.endLiveText();
        if (event.status === 'awaiting_approval') {
          // The run stops to wait for a person; the approval card is the way on.
          this.setStatus(event.status);
        } else {
          this.finish(event);
        }
        break;
    }
  }

  private approvalActions(): IApprovalActions {
    const id = this.sessionId!;
    return {
      approve: code => api.approve(id, code),
      reject: reason => api.reject(id, reason)
    };
  }

  private finish(event: api.ISessionFinished): void {
    this.timeline.addFinal(event);
    this.setUsage(event.usage.input_tokens, event.usage.output_tokens);
    this.setStatus(event.status);
  }

  // --- header and state --------------------------------------------------------------

  private reset(): void {
    this.stream?.dispose();
    this.stream = null;
    this.info = null;
    this.status = null;
    this.lastSeq = 0;
    this.timeline.clear();
    this.replayView.hide();
    this.followUp.hide();
    this.followUp.showError('');
    this.badgeSlot.replaceChildren();
    this.metaNode.textContent = '';
    this.usageNode.textContent = '';
    this.connectionNode.textContent = '';
    this.stopButton.hidden = true;
  }

  private setInfo(session: ISessionInfo): void {
    this.info = session;
    this.titleNode.textContent = session.task;
    this.titleNode.title = session.task;
    this.setUsage(session.input_tokens, session.output_tokens);
    const inside = !!session.notebook && !session.notebook.startsWith('/');
    this.openButton.disabled = !inside;
    this.replayButton.disabled = !inside;
    if (!inside) {
      const why = this.trans.__(
        "The notebook is outside the Jupyter server's root: %1",
        session.notebook
      );
      this.openButton.title = why;
      this.replayButton.title = why;
    }
    this.setStatus(session.status);
  }

  private setStatus(status: SessionStatus): void {
    if (status === this.status) {
      return;
    }
    this.status = status;
    this.badgeSlot.replaceChildren(statusBadge(status, this.trans));
    const finished = FINISHED_STATUSES.has(status);
    // Only a run in progress can be stopped; one awaiting approval waits for the card.
    this.stopButton.hidden = status !== 'running' && status !== 'starting';
    this.stopButton.disabled = false;
    if (finished) {
      this.followUp.show();
    } else {
      this.followUp.hide();
    }
    if (this.sessionId) {
      this.statusChangedSignal.emit({ sessionId: this.sessionId, status });
    }
  }

  private setUsage(input: number, output: number): void {
    this.usageNode.textContent = this.trans.__('%1 tokens', (input + output).toLocaleString());
    this.usageNode.title = this.trans.__(
      '%1 in, %2 out',
      input.toLocaleString(),
      output.toLocaleString()
    );
  }

  private setConnected(connected: boolean): void {
    this.connectionNode.textContent = connected ? '' : this.trans.__('reconnecting…');
  }

  // --- actions -----------------------------------------------------------------------

  private async stop(): Promise<void> {
    if (!this.sessionId) {
      return;
    }
    this.stopButton.disabled = true;
    try {
      await (this.options.stopSession ?? api.stop)(this.sessionId);
    } catch (error) {
      this.stopButton.disabled = false;
      this.timeline.addNode(
        h(
          'div',
          { class: 'jp-KernelAgent-error' },
          this.trans.__('Stop failed: %1', errorText(error))
        )
      );
    }
  }

  private openNotebook(): void {
    if (this.info?.notebook) {
      this.options.openNotebook(this.info.notebook);
    }
  }

  private async replay(): Promise<void> {
    const path = this.info?.notebook;
    if (!path) {
      return;
    }
    const id = this.sessionId;
    this.replayButton.disabled = true;
    this.replayView.showRunning(path);
    this.scrollToBottom();
    try {
      const report = await api.replay(path);
      if (id === this.sessionId) {
        this.replayView.showReport(report);
      }
    } catch (error) {
      if (id === this.sessionId) {
        this.replayView.showError(error);
      }
    } finally {
      this.replayButton.disabled = false;
      this.scrollToBottom();
    }
  }

  private async sendFollowUp(text: string): Promise<void> {
    if (this.sessionId) {
      await api.sendMessage(this.sessionId, text);
      this.followUp.hide(); // shown again when the session finishes again
    }
  }

  // --- scrolling ---------------------------------------------------------------------

  private isNearBottom(): boolean {
    const host = this.options.scrollHost();
    return host.scrollHeight - host.scrollTop - host.clientHeight < 80;
  }

  /** Scroll to the newest event, now and once images and markdown have rendered. */
  private scrollToBottom(): void {
    const host = this.options.scrollHost();
    host.scrollTop = host.scrollHeight;
    window.setTimeout(() => (host.scrollTop = host.scrollHeight), 150);
  }
}
