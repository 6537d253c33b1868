/**
 * The panel's memory section in jsdom: the list (kind, text, dataset, source session),
 * the search box (Enter and typing), and delete (asked first, in JupyterLab's dialog).
 */
import { acceptDialog, dismissDialog, waitForDialog } from '@jupyterlab/testing';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import type { IMemory } from '../src/api';
import { IMemoryListOptions, kindLabel, MemoryList, SEARCH_DELAY_MS } from '../src/memory-list';

const trans = nullTranslator.load('kernelagent');

function memory(id: string, fields: Partial<IMemory> = {}): IMemory {
  return {
    id,
    text: `text of ${id}`,
    kind: 'fact',
    user: 'ann',
    project: '',
    session_id: null,
    cell_id: null,
    notebook: null,
    dataset_sha256: null,
    dataset_name: null,
    score: 1,
    key: null,
    created_at: Date.now() / 1000,
    updated_at: Date.now() / 1000,
    ...fields
  };
}

const CARD = memory('m00000000001', {
  kind: 'dataset',
  text: 'sales.csv: 4 rows x 5 columns; read with parse_dates',
  dataset_name: 'sales.csv',
  dataset_sha256: 'a'.repeat(64),
  session_id: 'sess00000001',
  notebook: '/home/ann/session.ipynb'
});
const FACT = memory('m00000000002', { text: 'revenue is in cents', session_id: 'sess00000002' });
const PREFERENCE = memory('m00000000003', { kind: 'preference', text: 'plots in SVG' });

async function settle(ms = 0): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms));
}

class Server {
  memories = [CARD, FACT, PREFERENCE];
  queries: string[] = [];
  forgotten: string[] = [];
  failing = false;

  fetch = async (query: string): Promise<IMemory[]> => {
    this.queries.push(query);
    if (this.failing) {
      throw new Error('503 the store is down');
    }
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    return this.memories.filter(
      m => !words.length || words.some(word => m.text.toLowerCase().includes(word))
    );
  };

  forget = async (id: string): Promise<IMemory> => {
    this.forgotten.push(id);
    this.memories = this.memories.filter(m => m.id !== id);
    return CARD;
  };
}

describe('MemoryList', () => {
  let server: Server;
  let list: MemoryList;
  let opened: string[];

  const make = (options: Partial<IMemoryListOptions> = {}): MemoryList => {
    const widget = new MemoryList({
      trans,
      fetch: server.fetch,
      forget: server.forget,
      openSession: id => void opened.push(id),
      ...options
    });
    Widget.attach(widget, document.body); // shown: it fetches the memories
    return widget;
  };
  const items = (): HTMLElement[] =>
    Array.from(list.node.querySelectorAll<HTMLElement>('.jp-KernelAgent-memoryItem'));
  const item = (id: string): HTMLElement =>
    list.node.querySelector<HTMLElement>(`[data-memory-id="${id}"]`)!;
  const forgetButton = (id: string): HTMLButtonElement =>
    item(id).querySelector<HTMLButtonElement>('.jp-KernelAgent-memoryForget')!;
  const search = (text: string, key?: string): void => {
    list.searchBox.value = text;
    list.searchBox.dispatchEvent(new Event('input'));
    if (key) {
      list.searchBox.dispatchEvent(new KeyboardEvent('keydown', { key }));
    }
  };

  beforeEach(() => {
    server = new Server();
    opened = [];
  });

  afterEach(() => list.dispose());

  it('lists every memory with its kind, text, dataset and source session', async () => {
    list = make();
    await settle();
    expect(server.queries).toEqual(['']);
    expect(list.shownIds).toEqual([CARD.id, FACT.id, PREFERENCE.id]);
    const card = item(CARD.id);
    expect(card.querySelector('.jp-KernelAgent-memoryKind')?.textContent).toBe('dataset card');
    expect(card.querySelector('.jp-KernelAgent-memoryKind')?.classList).toContain('jp-mod-dataset');
    expect(card.querySelector('.jp-KernelAgent-memoryText')?.textContent).toBe(CARD.text);
    const dataset = card.querySelector<HTMLElement>('.jp-KernelAgent-memoryDataset')!;
    expect(dataset.textContent).toBe('sales.csv');
    expect(dataset.title).toBe(`sha256 ${'a'.repeat(64)}`);
    const source = card.querySelector<HTMLButtonElement>('.jp-KernelAgent-memorySource')!;
    expect(source.textContent).toBe('from session sess00000001');
    source.click();
    expect(opened).toEqual(['sess00000001']);
    expect(item(PREFERENCE.id).querySelector('.jp-KernelAgent-memorySource')).toBeNull();
    expect(forgetButton(FACT.id).getAttribute('aria-label')).toBe(`Delete memory ${FACT.id}`);
  });

  it('searches on Enter, and after typing stops', async () => {
    list = make();
    await settle();
    search('cents', 'Enter');
    await settle();
    expect(server.queries).toEqual(['', 'cents']);
    expect(list.shownIds).toEqual([FACT.id]);
    expect(list.query).toBe('cents');

    search('nothing-like-this');
    await settle(SEARCH_DELAY_MS + 100);
    expect(server.queries).toEqual(['', 'cents', 'nothing-like-this']); // one search, debounced
    expect(items()).toHaveLength(0);
    expect(list.node.textContent).toContain('No memory matches “nothing-like-this”.');

    search('', 'Enter');
    await settle();
    expect(list.shownIds).toHaveLength(3);
  });

  it('deletes a memory only when the person confirms', async () => {
    const answers = [false, true];
    const asked: string[] = [];
    list = make({
      confirm: async shown => {
        asked.push(shown.id);
        return answers.shift()!;
      }
    });
    await settle();
    forgetButton(FACT.id).click();
    await settle();
    expect(asked).toEqual([FACT.id]);
    expect(server.forgotten).toEqual([]);
    expect(list.shownIds).toContain(FACT.id);

    forgetButton(FACT.id).click();
    await settle();
    expect(server.forgotten).toEqual([FACT.id]);
    expect(list.shownIds).toEqual([CARD.id, PREFERENCE.id]);
  });

  it("asks in JupyterLab's dialog, showing the memory", async () => {
    list = make();
    await settle();
    forgetButton(CARD.id).click();
    await waitForDialog();
    await settle(50); // the title is a React element: rendered a moment later
    const dialog = document.body.querySelector('.jp-Dialog')!;
    expect(dialog.textContent).toContain('Delete this memory?');
    expect(dialog.querySelector('blockquote')?.textContent).toBe(CARD.text);
    await dismissDialog();
    await settle();
    expect(server.forgotten).toEqual([]);

    forgetButton(CARD.id).click();
    await acceptDialog();
    await settle();
    expect(server.forgotten).toEqual([CARD.id]);
    expect(list.shownIds).toEqual([FACT.id, PREFERENCE.id]);
  });

  it('says what failed and keeps what it showed', async () => {
    list = make();
    await settle();
    server.failing = true;
    await list.refresh();
    expect(list.node.querySelector('[role=alert]')?.textContent).toBe(
      'Cannot list memories: 503 the store is down'
    );
    expect(list.shownIds).toHaveLength(3);
    server.failing = false;
    await list.refresh();
    expect(list.node.querySelector('[role=alert]')?.textContent).toBe('');
  });

  it('says when there is nothing yet', async () => {
    server.memories = [];
    list = make();
    await settle();
    expect(list.node.textContent).toContain('No memories yet');
  });
});

describe('kindLabel', () => {
  it('names every kind', () => {
    expect(
      ['fact', 'finding', 'dataset', 'preference'].map(k => kindLabel(k as any, trans))
    ).toEqual(['fact', 'finding', 'dataset card', 'preference']);
  });
});
