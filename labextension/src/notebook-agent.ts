/**
 * The agent at work in a notebook the person has open.
 *
 * The session's events come over its WebSocket. For each `cell_started` the agent's code
 * is inserted below the person's active cell (or below the agent's previous cell) through
 * the notebook's shared model, so it is live, undoable, seen by collaborators and saved
 * by JupyterLab; it runs on the notebook's own kernel (`CodeCell.execute`), and its
 * outputs go back to the server (`POST sessions/{id}/cells/{cell_id}`), where the agent
 * waits for them. A pending action is a cell with Approve / Edit / Reject on it. The
 * agent's text goes into markdown cells, or stays in the panel (a setting).
 */
import { CodeCell, Cell } from '@jupyterlab/cells';
import { InputDialog } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { TranslationBundle } from '@jupyterlab/translation';
import { checkIcon, closeIcon, editIcon } from '@jupyterlab/ui-components';
import { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';
import { PanelLayout, Widget } from '@lumino/widgets';

import * as api from './api';
import { AgentEvent } from './api';
import { button, errorText, h } from './dom';

/** Where the agent's text goes. */
export type TextPlacement = 'markdown' | 'panel';

/** `metadata.kernelagent` of a cell the agent wrote. */
export interface IAgentCellMetadata {
  session_id: string;
  cell_id?: string;
  tool_call_id?: string;
  kind?: string;
  role: 'code' | 'text' | 'answer';
  status?: string;
}

export interface INotebookAgentOptions {
  notebook: NotebookPanel;
  sessionId: string;
  textPlacement: TextPlacement;
  trans: TranslationBundle;
}

export class NotebookAgent implements IDisposable {
  readonly notebook: NotebookPanel;
  readonly sessionId: string;
  private readonly trans: TranslationBundle;
  private readonly textPlacement: TextPlacement;
  private stream: api.EventStream | null = null;
  /** The model id of the cell the next agent cell goes below. */
  private anchorId: string | null;
  private queue: Promise<void> = Promise.resolve();
  private readonly finishedCells = new Set<string>();
  private readonly bars = new Map<string, Widget>();
  private readonly errorSignal = new Signal<this, string>(this);
  private disposed = false;

  constructor(options: INotebookAgentOptions) {
    this.notebook = options.notebook;
    this.sessionId = options.sessionId;
    this.trans = options.trans;
    this.textPlacement = options.textPlacement;
    this.anchorId = this.notebook.content.activeCell?.model.id ?? null;
  }

  /** Problems running the agent's cells, for the panel to show. */
  get failed(): ISignal<this, string> {
    return this.errorSignal;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Follow the session's events from the start. */
  /**
   * Follow the session's events. `history` is what happened before this panel took the
   * session up again (after a page reload): from it, only what still waits for the
   * notebook is done (a cell the agent waits for runs; a pending action gets its bar);
   * then the live events follow.
   */
  start(history: AgentEvent[] = []): void {
    const finished = new Set<string>();
    const decided = new Set<string>();
    for (const event of history) {
      if (event.type === 'cell_finished') {
        finished.add(event.cell_id);
      } else if (event.type === 'approval_decided') {
        decided.add(event.cell_id);
      }
    }
    let seq = 0;
    for (const event of history) {
      seq = Math.max(seq, event.seq ?? 0);
      const waiting =
        (event.type === 'cell_started' && !finished.has(event.cell_id)) ||
        (event.type === 'approval_requested' && !decided.has(event.cell_id));
      if (waiting) {
        this.handle(event);
      } else if (event.type === 'cell_finished') {
        this.finishedCells.add(event.cell_id);
      }
    }
    if (history.length) {
      this.anchorId = this.lastAgentCellId() ?? this.anchorId;
    }
    this.stream = new api.EventStream(this.sessionId, seq, event => this.handle(event));
  }

  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    this.stream?.dispose();
    this.bars.forEach(bar => bar.dispose());
    this.bars.clear();
    Signal.clearData(this);
  }

  /** Stop: interrupt the notebook's kernel, then stop the session. */
  async stop(): Promise<void> {
    await this.notebook.sessionContext.session?.kernel?.interrupt();
    await api.stop(this.sessionId);
  }

  /** One event; cells run one after another, in the order the agent sent them. */
  handle(event: AgentEvent): void {
    if (event.attempt && event.attempt > 1) {
      return;
    }
    this.queue = this.queue
      .then(() => this.apply(event))
      .catch(error => this.errorSignal.emit(errorText(error)));
  }

  private async apply(event: AgentEvent): Promise<void> {
    switch (event.type) {
      case 'cell_started':
        if (!this.finishedCells.has(event.cell_id)) {
          await this.runCell(event);
        }
        break;
      case 'cell_finished':
        this.finishedCells.add(event.cell_id);
        break;
      case 'approval_requested':
        this.addPending(event);
        break;
      case 'approval_decided':
        this.decided(event);
        break;
      case 'assistant_text':
        if (this.textPlacement === 'markdown') {
          this.insert({ cell_type: 'markdown', source: event.text }, { role: 'text' });
        }
        break;
      case 'session_finished':
        if (this.textPlacement === 'markdown' && event.answer) {
          const source = `**${this.trans.__('kernelagent')}:** ${event.answer}`;
          this.insert({ cell_type: 'markdown', source }, { role: 'answer' });
        }
        break;
    }
  }

  // --- the agent's cells -------------------------------------------------------------

  private async runCell(event: api.ICellStarted): Promise<void> {
    let cell = this.findCell(event.cell_id);
    const metadata: IAgentCellMetadata = {
      session_id: this.sessionId,
      cell_id: event.cell_id,
      tool_call_id: event.tool_call_id,
      kind: event.kind,
      role: 'code',
      status: 'running'
    };
    if (cell) {
      cell.model.sharedModel.setSource(event.code); // the approved (maybe edited) code
      this.setAgentMetadata(cell, metadata);
    } else {
      cell = this.insert({ cell_type: 'code', source: event.code }, metadata);
    }
    if (!(cell instanceof CodeCell)) {
      throw new Error(this.trans.__('cell %1 is not a code cell', event.cell_id));
    }
    const result = await this.execute(cell);
    this.setAgentMetadata(cell, { ...metadata, status: result.status ?? 'ok' });
    await api.postCellResult(this.sessionId, event.cell_id, result);
  }

  private async execute(cell: CodeCell): Promise<api.ICellResultRequest> {
    let status: 'ok' | 'error' | 'kernel_died' = 'ok';
    let detail = '';
    try {
      const reply = await CodeCell.execute(cell, this.notebook.sessionContext);
      if (!reply) {
        status = 'error';
        detail = this.trans.__('the notebook has no running kernel');
      } else if (reply.content.status !== 'ok') {
        status = 'error';
      }
    } catch (error) {
      const dead = this.notebook.sessionContext.session?.kernel?.status === 'dead';
      status = dead ? 'kernel_died' : 'error';
      detail = errorText(error);
    }
    const outputs = cell.model.outputs.toJSON() as unknown as { [key: string]: unknown }[];
    return { outputs, execution_count: cell.model.executionCount, status, detail };
  }

  /** A pending action: the cell, not yet run, with Approve / Edit / Reject on it. */
  private addPending(event: api.IApprovalRequested): void {
    if (event.kind !== 'python' && event.kind !== 'shell') {
      return; // not a cell (a host tool call): the panel's approval card asks for it
    }
    const metadata: IAgentCellMetadata = {
      session_id: this.sessionId,
      cell_id: event.cell_id,
      tool_call_id: event.tool_call_id,
      kind: event.kind,
      role: 'code',
      status: 'awaiting_approval'
    };
    const cell =
      this.findCell(event.cell_id) ??
      this.insert({ cell_type: 'code', source: event.code }, metadata);
    this.bars.get(event.cell_id)?.dispose();
    const bar = this.approvalBar(cell, event);
    (cell.layout as PanelLayout).insertWidget(0, bar);
    this.bars.set(event.cell_id, bar);
    cell.addClass('jp-KernelAgent-pendingCell');
  }

  private approvalBar(cell: Cell, event: api.IApprovalRequested): Widget {
    const trans = this.trans;
    const errorNode = h('span', { class: 'jp-KernelAgent-error' });
    const act = (action: () => Promise<void>) => () => {
      errorNode.textContent = '';
      action().catch(error => (errorNode.textContent = errorText(error)));
    };
    const source = () => cell.model.sharedModel.getSource();
    const approve = button({
      label: trans.__('Approve'),
      icon: checkIcon,
      kind: 'accept',
      title: trans.__('Run this cell (as it is now in the notebook)'),
      onClick: act(() => {
        const code = source();
        return api.approve(this.sessionId, code === event.code ? undefined : code);
      })
    });
    const edit = button({
      label: trans.__('Edit'),
      icon: editIcon,
      title: trans.__('Change the code in the cell, then approve it'),
      onClick: () => {
        this.notebook.content.activeCellIndex = this.notebook.content.widgets.indexOf(cell);
        this.notebook.content.mode = 'edit';
        cell.editor?.focus();
      }
    });
    const reject = button({
      label: trans.__('Reject'),
      icon: closeIcon,
      kind: 'reject',
      title: trans.__('Do not run this cell; the agent is told'),
      onClick: act(async () => {
        const answer = await InputDialog.getText({
          title: trans.__('Reject this cell'),
          label: trans.__('Reason for rejecting (the agent reads it)'),
          okLabel: trans.__('Reject')
        });
        if (answer.button.accept) {
          await api.reject(this.sessionId, answer.value ?? '');
        }
      })
    });
    return new Widget({
      node: h(
        'div',
        { class: 'jp-KernelAgent-cellApproval', role: 'group' },
        h(
          'span',
          { class: 'jp-KernelAgent-cellApprovalText' },
          trans.__('kernelagent waits for your approval: %1', event.reason)
        ),
        approve,
        edit,
        reject,
        errorNode
      )
    });
  }

  private decided(event: api.IApprovalDecided): void {
    this.bars.get(event.cell_id)?.dispose();
    this.bars.delete(event.cell_id);
    const cell = this.findCell(event.cell_id);
    if (!cell) {
      return;
    }
    cell.removeClass('jp-KernelAgent-pendingCell');
    if (event.decision === 'rejected') {
      const info = cell.model.getMetadata('kernelagent') as IAgentCellMetadata | undefined;
      if (info) {
        this.setAgentMetadata(cell, { ...info, status: 'rejected' });
      }
    }
  }

  // --- the notebook's model ----------------------------------------------------------

  /** Insert a cell below the anchor through the shared model; it becomes the anchor. */
  private insert(
    cell: { cell_type: 'code' | 'markdown'; source: string },
    metadata: Omit<IAgentCellMetadata, 'session_id'> & { session_id?: string }
  ): Cell {
    const notebook = this.notebook.content;
    const model = notebook.model;
    if (!model) {
      throw new Error(this.trans.__('the notebook is not loaded'));
    }
    const widgets = notebook.widgets;
    const anchor = widgets.findIndex(widget => widget.model.id === this.anchorId);
    const index = anchor >= 0 ? anchor + 1 : widgets.length;
    const info = { ...metadata, session_id: this.sessionId };
    const shared = model.sharedModel.insertCell(index, {
      cell_type: cell.cell_type,
      source: cell.source,
      metadata: { kernelagent: info } as any,
      ...(cell.cell_type === 'code' ? { outputs: [], execution_count: null } : {})
    });
    this.anchorId = shared.getId();
    const widget = notebook.widgets[index];
    if (cell.cell_type === 'markdown' && widget) {
      (widget as any).rendered = true;
    }
    return widget;
  }

  /** The model id of this session's last cell in the notebook, if it has one. */
  private lastAgentCellId(): string | null {
    const cells = this.notebook.content.widgets.filter(
      widget =>
        (widget.model.getMetadata('kernelagent') as IAgentCellMetadata | undefined)?.session_id ===
        this.sessionId
    );
    return cells.length ? cells[cells.length - 1].model.id : null;
  }

  private findCell(cellId: string): Cell | undefined {
    return this.notebook.content.widgets.find(
      widget =>
        (widget.model.getMetadata('kernelagent') as IAgentCellMetadata | undefined)?.cell_id ===
        cellId
    );
  }

  private setAgentMetadata(cell: Cell, metadata: IAgentCellMetadata): void {
    cell.model.setMetadata('kernelagent', metadata as any);
  }
}
