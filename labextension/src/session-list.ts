/**
 * The sessions the server knows, newest first, each with a status badge.
 * Clicking one shows it in the session view.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { ISessionInfo, listSessions } from './api';
import { errorText, formatAgo, h } from './dom';
import { statusBadge } from './session-view';

export class SessionList extends Widget {
  private readonly selectedSignal = new Signal<this, string>(this);
  private current: string | null = null;
  private sessions: ISessionInfo[] = [];
  private refreshing: Promise<void> | null = null;

  constructor(private readonly trans: TranslationBundle) {
    super();
    this.addClass('jp-KernelAgent-sessionList');
    this.node.append(h('div', { class: 'jp-KernelAgent-muted' }, trans.__('Loading…')));
  }

  /** Emitted with a session id when the person clicks it. */
  get selected(): ISignal<this, string> {
    return this.selectedSignal;
  }

  setCurrent(id: string | null): void {
    this.current = id;
    this.render();
  }

  /** Fetch the list again (concurrent calls share one request). */
  refresh(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.fetch().finally(() => (this.refreshing = null));
    }
    return this.refreshing;
  }

  private async fetch(): Promise<void> {
    try {
      const sessions = await listSessions();
      this.sessions = [...sessions].sort((a, b) => b.created_at - a.created_at);
      this.render();
    } catch (error) {
      this.node.replaceChildren(
        h(
          'div',
          { class: 'jp-KernelAgent-error' },
          this.trans.__(
            'Cannot list sessions: %1. Is the kernelagent server extension enabled?',
            errorText(error)
          )
        )
      );
    }
  }

  private render(): void {
    if (!this.sessions.length) {
      this.node.replaceChildren(
        h(
          'div',
          { class: 'jp-KernelAgent-muted' },
          this.trans.__('No sessions yet: run a task above.')
        )
      );
      return;
    }
    const items = this.sessions.map(session => {
      const item = h(
        'li',
        {
          class:
            'jp-KernelAgent-sessionItem' + (session.id === this.current ? ' jp-mod-selected' : ''),
          title: session.task,
          tabindex: '0',
          'data-session-id': session.id
        },
        statusBadge(session.status, this.trans),
        h('span', { class: 'jp-KernelAgent-sessionTask' }, session.task),
        session.in_notebook
          ? h(
              'span',
              { class: 'jp-KernelAgent-inNotebook', title: session.in_notebook },
              this.trans.__('in %1', session.in_notebook)
            )
          : null,
        h(
          'span',
          { class: 'jp-KernelAgent-muted' },
          this.trans._n('%1 cell', '%1 cells', session.cells) +
            ` · ${formatAgo(session.created_at)}`
        )
      );
      const choose = () => this.selectedSignal.emit(session.id);
      item.addEventListener('click', choose);
      item.addEventListener('keydown', event => {
        if (event.key === 'Enter') {
          choose();
        }
      });
      return item;
    });
    this.node.replaceChildren(h('ul', {}, ...items));
  }
}
