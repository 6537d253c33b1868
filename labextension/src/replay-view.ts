/**
 * The report of re-running a session's notebook in a fresh sandbox:
 * one row per code cell (matched / diverged / error / skipped), diffs on demand.
 */
import { Widget } from '@lumino/widgets';

import { IReplayReport } from './api';
import { errorText, formatSeconds, h, spinner } from './dom';

export class ReplayView extends Widget {
  constructor() {
    super();
    this.addClass('jp-KernelAgent-replay');
    this.hide();
  }

  showRunning(path: string): void {
    this.node.replaceChildren(
      h(
        'div',
        { class: 'jp-KernelAgent-replayTitle' },
        spinner('replaying'),
        ` Replaying ${path} in a fresh sandbox…`
      )
    );
    this.show();
  }

  showError(error: unknown): void {
    this.node.replaceChildren(
      h('div', { class: 'jp-KernelAgent-error' }, `Replay failed: ${errorText(error)}`)
    );
    this.show();
  }

  showReport(report: IReplayReport): void {
    const ok = report.diverged === 0 && report.error === 0;
    const summary = h(
      'div',
      { class: `jp-KernelAgent-replayTitle ${ok ? 'jp-mod-ok' : 'jp-mod-diverged'}` },
      `Replay: ${report.matched} matched, ${report.diverged} diverged, ` +
        `${report.error} error, ${report.skipped} skipped ` +
        `(${formatSeconds(report.seconds)})`
    );
    const rows = report.cells.map(cell => {
      const reason: (string | HTMLElement)[] = [cell.reason];
      if (cell.diff) {
        reason.push(
          h(
            'details',
            {},
            h('summary', {}, 'diff'),
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
          h('th', {}, 'cell'),
          h('th', {}, 'outcome'),
          h('th', {}, 'why'),
          h('th', {}, 'time')
        )
      ),
      h('tbody', {}, ...rows)
    );
    this.node.replaceChildren(summary, table);
    this.show();
  }
}
