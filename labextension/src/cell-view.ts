/**
 * One code cell the agent ran: its highlighted code, a spinner while it runs, and its
 * outputs rendered by JupyterLab's output area (so plots appear as images).
 */
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import * as nbformat from '@jupyterlab/nbformat';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { Panel, Widget } from '@lumino/widgets';

import { CellKind, CellStatus, ICellFinished, IEgressRecord } from './api';
import { formatSeconds, h, spinner } from './dom';
import { codeBlock } from './render';

export interface ICellViewOptions {
  cellId: string;
  kind: CellKind;
  code: string;
  rendermime: IRenderMimeRegistry;
  languages: IEditorLanguageRegistry;
  trans?: TranslationBundle;
}

export class CellView extends Panel {
  readonly cellId: string;
  private readonly model = new OutputAreaModel({ trusted: false });
  private readonly statusSlot: HTMLElement;
  private readonly trans: TranslationBundle;

  constructor(options: ICellViewOptions) {
    super();
    const trans = (this.trans = options.trans ?? nullTranslator.load('kernelagent'));
    this.cellId = options.cellId;
    this.addClass('jp-KernelAgent-cell');
    this.addClass('jp-mod-running');
    this.node.dataset.cellId = options.cellId;

    this.statusSlot = h('span', { class: 'jp-KernelAgent-cellStatus' }, spinner());
    const header = new Widget({
      node: h(
        'div',
        { class: 'jp-KernelAgent-cellHeader' },
        h(
          'span',
          { class: 'jp-KernelAgent-cellKind' },
          options.kind === 'shell' ? trans.__('shell') : trans.__('python')
        ),
        this.statusSlot
      )
    });
    const code = new Widget({
      node: codeBlock(options.languages, options.code, options.kind)
    });
    // The output area is not trusted: HTML is sanitized, scripts do not run.
    const outputs = new OutputArea({ model: this.model, rendermime: options.rendermime });
    outputs.addClass('jp-KernelAgent-outputs');

    this.addWidget(header);
    this.addWidget(code);
    this.addWidget(outputs);
  }

  get isRunning(): boolean {
    return this.hasClass('jp-mod-running');
  }

  /** An output streamed while the cell runs. */
  addOutput(output: nbformat.IOutput): void {
    this.model.add(output);
  }

  /** A request the cell made through the egress proxy (allowed or refused). */
  addEgress(record: IEgressRecord): void {
    const where = `${record.method} ${record.host}:${record.port}${record.path ?? ''}`;
    const text =
      record.decision === 'allowed'
        ? `↗ ${where} · ${record.status ?? ''} · ${record.bytes_down} B`
        : `⛔ ${this.trans.__('refused %1', where)}`;
    this.node.append(
      h(
        'div',
        {
          class: `jp-KernelAgent-egress jp-KernelAgent-egress-${record.decision}`,
          title: record.reason ?? ''
        },
        text
      )
    );
  }

  /** The cell ended: its status, and the outputs it kept (authoritative). */
  finish(event: ICellFinished): void {
    this.setOutputs(event.outputs);
    const seconds = Math.max(0, event.finished_at - event.started_at);
    this.setStatus(event.status, event.detail, seconds, event.execution_count);
    if (event.truncated) {
      this.node.append(
        h('div', { class: 'jp-KernelAgent-note' }, 'Output was cut at the size limit.')
      );
    }
  }

  /** Show ``outputs`` instead of the current ones (a later cell updated a display here). */
  setOutputs(outputs: nbformat.IOutput[]): void {
    if (JSON.stringify(this.model.toJSON()) !== JSON.stringify(outputs)) {
      this.model.clear();
      this.model.fromJSON(outputs);
    }
  }

  /** The session ended while this cell was still shown as running. */
  abandon(reason: string): void {
    if (this.isRunning) {
      this.setStatus('interrupted', reason, null, null);
    }
  }

  private setStatus(
    status: CellStatus,
    detail: string,
    seconds: number | null,
    executionCount: number | null
  ): void {
    this.removeClass('jp-mod-running');
    this.addClass(`jp-mod-${status}`);
    const parts: (string | HTMLElement)[] = [];
    if (executionCount !== null && executionCount !== undefined) {
      parts.push(h('span', { class: 'jp-KernelAgent-count' }, `[${executionCount}]`));
    }
    parts.push(
      h(
        'span',
        {
          class: `jp-KernelAgent-badge jp-KernelAgent-badge-${status}`,
          title: detail || status
        },
        this.statusLabel(status)
      )
    );
    if (seconds !== null) {
      parts.push(h('span', { class: 'jp-KernelAgent-muted' }, formatSeconds(seconds)));
    }
    this.statusSlot.replaceChildren(...parts);
    if (detail) {
      this.statusSlot.append(h('span', { class: 'jp-KernelAgent-muted' }, detail));
    }
  }

  private statusLabel(status: CellStatus): string {
    const trans = this.trans;
    const labels: Record<string, string> = {
      ok: trans.__('ok'),
      error: trans.__('error'),
      timeout: trans.__('timeout'),
      kernel_died: trans.__('kernel died'),
      interrupted: trans.__('interrupted'),
      rejected: trans.__('rejected')
    };
    return labels[status] ?? status;
  }
}
