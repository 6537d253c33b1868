/**
 * The panel's memory section: what the agent remembers across sessions (dataset cards,
 * findings, facts, preferences), newest first, with a search box (the server's full-text
 * search) and a delete button per memory, which asks first.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { deleteIcon, searchIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Debouncer } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { forgetMemory, IMemory, listMemories, MemoryKind } from './api';
import { errorText, formatAgo, h } from './dom';

/** How long typing pauses before the search runs. */
export const SEARCH_DELAY_MS = 300;

export interface IMemoryListOptions {
  trans: TranslationBundle;
  /** The memories, or those matching `query` (default: the server's memory API). */
  fetch?: (query: string) => Promise<IMemory[]>;
  /** Delete a memory (default: the server's memory API). */
  forget?: (id: string) => Promise<unknown>;
  /** Ask before a memory is deleted (default: a JupyterLab dialog). */
  confirm?: (memory: IMemory) => Promise<boolean>;
  /** Show the session a memory came from. */
  openSession?: (id: string) => void;
}

export class MemoryList extends Widget {
  readonly searchBox: HTMLInputElement;
  private readonly body = h('div', { class: 'jp-KernelAgent-memoryBody' });
  private readonly status = h('div', { class: 'jp-KernelAgent-error', role: 'alert' });
  private readonly trans: TranslationBundle;
  private readonly fetchMemories: (query: string) => Promise<IMemory[]>;
  private readonly forgetMemory: (id: string) => Promise<unknown>;
  private readonly confirm: (memory: IMemory) => Promise<boolean>;
  private readonly debouncer: Debouncer;
  private memories: IMemory[] = [];
  private shownQuery = '';
  private generation = 0;

  constructor(private readonly options: IMemoryListOptions) {
    super();
    const trans = (this.trans = options.trans);
    this.addClass('jp-KernelAgent-memoryList');
    this.fetchMemories = options.fetch ?? (query => listMemories(query));
    this.forgetMemory = options.forget ?? forgetMemory;
    this.confirm = options.confirm ?? (memory => confirmForget(memory, trans));
    this.searchBox = h('input', {
      type: 'search',
      class: 'jp-KernelAgent-memorySearch',
      placeholder: trans.__('Search memories'),
      'aria-label': trans.__('Search memories'),
      title: trans.__('Words to look for (stemmed, any of them)')
    });
    this.debouncer = new Debouncer(() => this.refresh(), SEARCH_DELAY_MS);
    this.searchBox.addEventListener('input', () => void this.debouncer.invoke());
    this.searchBox.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        this.debouncer.stop();
        void this.refresh();
      }
    });
    const search = h(
      'label',
      { class: 'jp-KernelAgent-memorySearchBox' },
      searchIcon.element({ tag: 'span', className: 'jp-KernelAgent-memorySearchIcon' }),
      this.searchBox
    );
    this.body.append(h('div', { class: 'jp-KernelAgent-muted' }, trans.__('Loading…')));
    this.node.append(search, this.status, this.body);
  }

  /** The query of the memories shown ('' for all of them). */
  get query(): string {
    return this.shownQuery;
  }

  /** The ids of the memories shown, in order. */
  get shownIds(): string[] {
    return this.memories.map(memory => memory.id);
  }

  /** Fetch the memories again, for the query in the search box. */
  async refresh(): Promise<void> {
    const query = this.searchBox.value.trim();
    const generation = ++this.generation;
    try {
      const memories = await this.fetchMemories(query);
      if (generation !== this.generation) {
        return; // a newer search answered (or will) first
      }
      this.memories = memories;
      this.shownQuery = query;
      this.status.textContent = '';
      this.render();
    } catch (error) {
      if (generation === this.generation) {
        this.status.textContent = this.trans.__('Cannot list memories: %1', errorText(error));
      }
    }
  }

  dispose(): void {
    this.debouncer.dispose();
    super.dispose();
  }

  /** Shown (the section opened, the panel shown) or attached visible: fetch again. */
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      void this.refresh();
    }
  }

  private render(): void {
    if (!this.memories.length) {
      const empty = this.shownQuery
        ? this.trans.__('No memory matches “%1”.', this.shownQuery)
        : this.trans.__('No memories yet: sessions write them when they finish.');
      this.body.replaceChildren(h('div', { class: 'jp-KernelAgent-muted' }, empty));
      return;
    }
    this.body.replaceChildren(h('ul', {}, ...this.memories.map(memory => this.item(memory))));
  }

  private item(memory: IMemory): HTMLElement {
    const trans = this.trans;
    const forget = h('button', {
      type: 'button',
      class: 'jp-Button jp-mod-minimal jp-KernelAgent-memoryForget',
      title: trans.__('Delete this memory: later sessions no longer see it'),
      'aria-label': trans.__('Delete memory %1', memory.id)
    });
    forget.append(deleteIcon.element({ tag: 'span', elementPosition: 'center' }));
    forget.addEventListener('click', () => void this.forget(memory));
    let source: HTMLElement | null = null;
    if (memory.session_id) {
      const sessionId = memory.session_id;
      source = h(
        'button',
        {
          type: 'button',
          class: 'jp-KernelAgent-memorySource',
          title: memory.notebook ?? trans.__('Show the session it came from')
        },
        trans.__('from session %1', sessionId)
      );
      source.addEventListener('click', () => this.options.openSession?.(sessionId));
    }
    return h(
      'li',
      { class: 'jp-KernelAgent-memoryItem', 'data-memory-id': memory.id },
      h(
        'div',
        { class: 'jp-KernelAgent-memoryHead' },
        h(
          'span',
          { class: `jp-KernelAgent-badge jp-KernelAgent-memoryKind jp-mod-${memory.kind}` },
          kindLabel(memory.kind, trans)
        ),
        memory.dataset_name
          ? h(
              'span',
              {
                class: 'jp-KernelAgent-memoryDataset',
                title: memory.dataset_sha256 ? `sha256 ${memory.dataset_sha256}` : undefined
              },
              memory.dataset_name
            )
          : null,
        source,
        h(
          'span',
          { class: 'jp-KernelAgent-muted', title: memory.id },
          formatAgo(memory.updated_at)
        ),
        forget
      ),
      h('div', { class: 'jp-KernelAgent-memoryText' }, memory.text)
    );
  }

  private async forget(memory: IMemory): Promise<void> {
    if (!(await this.confirm(memory))) {
      return;
    }
    try {
      await this.forgetMemory(memory.id);
    } catch (error) {
      this.status.textContent = this.trans.__('Cannot delete the memory: %1', errorText(error));
      return;
    }
    this.memories = this.memories.filter(shown => shown.id !== memory.id);
    this.status.textContent = '';
    this.render();
  }
}

export function kindLabel(kind: MemoryKind, trans: TranslationBundle): string {
  switch (kind) {
    case 'fact':
      return trans.__('fact');
    case 'finding':
      return trans.__('finding');
    case 'dataset':
      return trans.__('dataset card');
    case 'preference':
      return trans.__('preference');
  }
}

async function confirmForget(memory: IMemory, trans: TranslationBundle): Promise<boolean> {
  const result = await showDialog({
    title: trans.__('Delete this memory?'),
    body: new Widget({
      node: h(
        'div',
        { class: 'jp-KernelAgent-memoryConfirm' },
        h('p', {}, trans.__('Later sessions will no longer see it:')),
        h('blockquote', {}, memory.text)
      )
    }),
    buttons: [
      Dialog.cancelButton({ label: trans.__('Cancel') }),
      Dialog.warnButton({ label: trans.__('Delete') })
    ]
  });
  return result.button.accept;
}
