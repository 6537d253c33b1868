/**
 * The panel's widgets in jsdom: the approval card (approve, edit, reject, the decision
 * arriving), the prompt form (bound to a notebook or not), and the notebook summary the
 * agent is given.
 */
import { EditorLanguageRegistry } from '@jupyterlab/codemirror';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import type { IApprovalDecided, IApprovalRequested, ICreateSessionRequest } from '../src/api';
import { ApprovalCard } from '../src/approval-card';
import { summariseOutputs } from '../src/notebook-context';
import { PromptForm } from '../src/prompt-form';

const trans = nullTranslator.load('kernelagent');

const REQUEST = {
  type: 'approval_requested',
  cell_id: 'c1',
  tool_call_id: 't1',
  kind: 'shell',
  code: '%%bash\nrm data.csv',
  code_sha256: 'x'.repeat(64),
  reason: 'shell commands need approval',
  seq: 4,
  session_id: 's',
  time: 0,
  attempt: null
} as unknown as IApprovalRequested;

function buttonNamed(root: HTMLElement, label: string): HTMLButtonElement {
  const found = Array.from(root.querySelectorAll('button')).find(
    button => button.textContent?.trim() === label
  );
  if (!found) {
    throw new Error(`no button ${label} in ${root.textContent}`);
  }
  return found as HTMLButtonElement;
}

async function settle(): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 0));
}

describe('ApprovalCard', () => {
  let calls: { approve: (string | undefined)[]; reject: (string | undefined)[] };
  let card: ApprovalCard;

  beforeEach(() => {
    calls = { approve: [], reject: [] };
    card = new ApprovalCard(
      REQUEST,
      {
        approve: async code => void calls.approve.push(code),
        reject: async reason => void calls.reject.push(reason)
      },
      { languages: new EditorLanguageRegistry(), trans }
    );
    Widget.attach(card, document.body);
  });

  afterEach(() => card.dispose());

  it('shows the action and why it waits', () => {
    expect(card.node.textContent).toContain('Approve this shell command?');
    expect(card.node.textContent).toContain('shell commands need approval');
    expect(card.node.textContent).toContain('rm data.csv');
    expect(card.isPending).toBe(true);
  });

  it('approves the code as proposed', async () => {
    buttonNamed(card.node, 'Approve').click();
    await settle();
    expect(calls.approve).toEqual([undefined]);
    expect(card.node.textContent).toContain('Sent; waiting for the agent');
  });

  it('approves edited code', async () => {
    buttonNamed(card.node, 'Edit').click();
    const editor = card.node.querySelector('textarea') as HTMLTextAreaElement;
    expect(editor.getAttribute('aria-label')).toBe('Edited code');
    expect(editor.value).toBe(REQUEST.code);
    editor.value = '%%bash\nls';
    buttonNamed(card.node, 'Approve edited').click();
    await settle();
    expect(calls.approve).toEqual(['%%bash\nls']);
  });

  it('rejects with a reason', async () => {
    buttonNamed(card.node, 'Reject').click();
    const reason = card.node.querySelector('input') as HTMLInputElement;
    reason.value = 'keep the data';
    buttonNamed(card.node, 'Reject').click();
    await settle();
    expect(calls.reject).toEqual(['keep the data']);
  });

  it('closes when the decision arrives, whoever made it', () => {
    card.decided({
      type: 'approval_decided',
      cell_id: 'c1',
      decision: 'rejected',
      decided_by: 'ada@lab',
      code: REQUEST.code,
      reason: 'no'
    } as unknown as IApprovalDecided);
    expect(card.isPending).toBe(false);
    expect(card.hasClass('jp-mod-decided')).toBe(true);
    expect(card.node.textContent).toContain('Rejected by ada@lab: no');
    expect(card.node.querySelectorAll('button')).toHaveLength(0);
  });
});

describe('PromptForm', () => {
  let form: PromptForm;
  let submitted: ICreateSessionRequest[];

  beforeEach(() => {
    submitted = [];
    form = new PromptForm({ settings: null, trans });
    form.submitted.connect((_, request) => void submitted.push(request));
    Widget.attach(form, document.body);
  });

  afterEach(() => form.dispose());

  const run = (): HTMLButtonElement =>
    form.node.querySelector('.jp-KernelAgent-run') as HTMLButtonElement;

  it('asks for a task before it runs', () => {
    run().click();
    expect(submitted).toHaveLength(0);
    expect(form.node.textContent).toContain('Write a task first.');
  });

  it('sends the task, the data files and the settings given', () => {
    (form.node.querySelector('[aria-label="Task"]') as HTMLTextAreaElement).value =
      'Total revenue?';
    (form.node.querySelector('.jp-KernelAgent-data') as HTMLInputElement).value =
      'sales.csv, /data/b.csv';
    (form.node.querySelector('[name=approve]') as HTMLSelectElement).value = 'shell';
    (form.node.querySelector('[name=max_steps]') as HTMLInputElement).value = '5';
    run().click();
    expect(submitted).toEqual([
      { task: 'Total revenue?', data: ['sales.csv', 'data/b.csv'], approve: 'shell', max_steps: 5 }
    ]);
  });

  it('bound to a notebook, it asks there and has no data files', () => {
    expect(run().textContent).toContain('Run');
    form.setBound(true);
    expect(run().textContent).toContain('Ask');
    const data = form.node.querySelector('.jp-KernelAgent-data') as HTMLInputElement;
    expect(data.parentElement!.hidden).toBe(true);
    expect(form.notebookText).toBe('markdown');
    form.setBound(false);
    expect(run().textContent).toContain('Run');
  });
});

describe('summariseOutputs', () => {
  it('keeps text, errors and the kinds of rich outputs, shortened', () => {
    const summary = summariseOutputs([
      { output_type: 'stream', name: 'stdout', text: ['west ', '505\n'] },
      { output_type: 'error', ename: 'KeyError', evalue: "'x'", traceback: [] },
      { output_type: 'display_data', data: { 'image/png': 'iVBOR' }, metadata: {} },
      {
        output_type: 'execute_result',
        execution_count: 3,
        data: { 'text/plain': 'y'.repeat(1000) },
        metadata: {}
      }
    ]);
    expect(summary).toContain('west 505');
    expect(summary).toContain("KeyError: 'x'");
    expect(summary).toContain('[image/png]');
    expect(summary.length).toBeLessThan(420);
    expect(summary.endsWith('…')).toBe(true);
  });
});
