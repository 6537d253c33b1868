/**
 * The body of a session view: what the person asked, what the model said, each cell with
 * its outputs, approval cards and answers, in the order they happened.
 */
import { CodeEditor } from '@jupyterlab/codeeditor';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { TranslationBundle } from '@jupyterlab/translation';
import { Panel, Widget } from '@lumino/widgets';

import type * as api from './api';
import { ApprovalCard, IApprovalActions } from './approval-card';
import { CellView } from './cell-view';
import { h } from './dom';
import { markdownWidget } from './render';
import { statusLabel } from './session-labels';

export interface ITimelineOptions {
  rendermime: IRenderMimeRegistry;
  languages: IEditorLanguageRegistry;
  editorFactory?: CodeEditor.Factory | null;
  trans: TranslationBundle;
}

export class Timeline extends Panel {
  readonly cells = new Map<string, CellView>();
  readonly approvals = new Map<string, ApprovalCard>();
  private liveText: Widget | null = null;
  private readonly trans: TranslationBundle;

  constructor(private readonly options: ITimelineOptions) {
    super();
    this.trans = options.trans;
    this.addClass('jp-KernelAgent-timeline');
  }

  /** Remove everything (another session is shown). */
  clear(): void {
    this.cells.clear();
    this.approvals.clear();
    this.liveText = null;
    while (this.widgets.length) {
      this.widgets[0].dispose();
    }
  }

  addItem(widget: Widget, className?: string): void {
    if (className) {
      widget.addClass(className);
    }
    this.addWidget(widget);
  }

  addNode(node: HTMLElement): void {
    this.addWidget(new Widget({ node }));
  }

  addNote(text: string): void {
    this.addNode(h('div', { class: 'jp-KernelAgent-note' }, text));
  }

  appendLiveText(delta: string): void {
    if (!this.liveText) {
      this.liveText = new Widget({ node: h('div', { class: 'jp-KernelAgent-liveText' }) });
      this.addWidget(this.liveText);
    }
    this.liveText.node.textContent += delta;
  }

  /** The streamed text is replaced by the complete text (rendered as markdown). */
  endLiveText(): void {
    this.liveText?.dispose();
    this.liveText = null;
  }

  addCell(event: api.ICellStarted): void {
    const cell = new CellView({
      cellId: event.cell_id,
      kind: event.kind,
      code: event.code,
      rendermime: this.options.rendermime,
      languages: this.options.languages,
      trans: this.trans
    });
    this.cells.set(event.cell_id, cell);
    this.addWidget(cell);
  }

  addApproval(event: api.IApprovalRequested, actions: IApprovalActions): void {
    const card = new ApprovalCard(event, actions, {
      languages: this.options.languages,
      editorFactory: this.options.editorFactory,
      trans: this.trans
    });
    this.approvals.set(event.cell_id, card);
    this.addWidget(card);
  }

  /** The end of a run: its answer or status; what still waited is closed. */
  addFinal(event: api.ISessionFinished): void {
    const ended = this.trans.__('the session ended (%1)', statusLabel(event.status, this.trans));
    this.cells.forEach(cell => cell.abandon(ended));
    this.approvals.forEach(card => card.expire(this.trans.__('No decision: %1.', ended)));
    const hasAnswer = event.answer !== null && event.answer !== undefined;
    const box = new Panel();
    box.addClass('jp-KernelAgent-final');
    box.addClass(`jp-mod-${event.status}`);
    box.addWidget(
      new Widget({
        node: h(
          'div',
          { class: 'jp-KernelAgent-finalTitle' },
          hasAnswer ? this.trans.__('Answer') : statusLabel(event.status, this.trans)
        )
      })
    );
    if (hasAnswer) {
      const answer = markdownWidget(this.options.rendermime, event.answer!);
      answer.addClass('jp-KernelAgent-answer');
      box.addWidget(answer);
    }
    if (event.reason) {
      box.addWidget(
        new Widget({ node: h('div', { class: 'jp-KernelAgent-muted' }, event.reason) })
      );
    }
    this.addWidget(box);
  }
}
