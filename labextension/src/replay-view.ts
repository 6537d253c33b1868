/**
 * The report of re-running a session's notebook in a fresh sandbox:
 * one row per code cell (matched / diverged / error / skipped), diffs on demand.
 */
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { IReplayReport } from './api';
import { errorText, formatSeconds, h, spinner } from './dom';

export class ReplayView extends Widget {
  constructor(private readonly trans: TranslationBundle = nullTranslator.load('kernelagent')) {
    super();
    this.addClass('jp-KernelAgent-replay');
    this.hide();
  }

  showRunning(path: string): void {
    this.node.replaceChildren(
      h(
        'div',
        { class: 'jp-KernelAgent-replayTitle' },
        spinner(this.trans.__('replaying')),
        ' ' + this.trans.__('Replaying %1 in a fresh sandbox…', path)
      )
    );
    this.show();
  }

  showError(error: unknown): void {
    this.node.replaceChildren(
      h(
        'div',
        { class: 'jp-KernelAgent-error' },
        this.trans.__('Replay failed: %1', errorText(error))
      )
    );
    this.show();
  }

  showReport(report: IReplayReport): void {
    const ok = report.diverged === 0 && report.error === 0;
    const summary = h(
      'div',
      { class: `jp-KernelAgent-replayTitle ${ok ? 'jp-mod-ok' : 'jp-mod-diverged'}` },
      this.trans.__(
        'Replay: %1 matched, %2 diverged, %3 error, %4 skipped (%5)',
        report.matched,
        report.diverged,
        report.error,
        report.skipped,
        formatSeconds(report.seconds)
      )
    );
    const rows = report.cells.map(cell => {
      const reason: (string | HTMLElement)[] = [cell.reason];
      if (cell.diff) {
        reason.push(
          h(
            'details',
            {},
            h('summary', {}, this.trans.__('diff')),
            h('pre', { class: 'jp-KernelAgent-diff' }, cell.diff)
          )
        );
      }
      return h(
        'tr',
        { class: `jp-mod-${cell.outcome}` },
        h('td', {}, String(cell.cell)),
        h(
          'td',
          {},
          h(
            'span',
            { class: `jp-KernelAgent-badge jp-KernelAgent-badge-${cell.outcome}` },
            cell.outcome
          )
        ),
        h('td', { class: 'jp-KernelAgent-reason' }, ...reason),
        h('td', { class: 'jp-KernelAgent-muted' }, formatSeconds(cell.seconds))
      );
    });
    const table = h(
      'table',
      { class: 'jp-KernelAgent-replayTable' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, this.trans.__('cell')),
          h('th', {}, this.trans.__('outcome')),
          h('th', {}, this.trans.__('why')),
          h('th', {}, this.trans.__('time'))
        )
      ),
      h('tbody', {}, ...rows)
    );
    this.node.replaceChildren(summary, table);
    this.show();
  }
}
