/**
 * The panel's widgets in jsdom: the approval card (approve, edit, reject, the decision
 * arriving), the prompt form (bound to a notebook or not), the session view rendering
 * events, and the notebook summary the agent is given.
 */
import { EditorLanguageRegistry } from '@jupyterlab/codemirror';
import { RenderMimeRegistry, standardRendererFactories } from '@jupyterlab/rendermime';
import { nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import type {
  AgentEvent,
  IApprovalDecided,
  IApprovalRequested,
  ICreateSessionRequest
} from '../src/api';
import { ApprovalCard } from '../src/approval-card';
import { summariseOutputs } from '../src/notebook-context';
import { PromptForm } from '../src/prompt-form';
import { SessionView } from '../src/session-view';

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

describe('SessionView', () => {
  const event = (seq: number, fields: Record<string, unknown>): AgentEvent =>
    ({ seq, session_id: 's1', time: 0, attempt: null, ...fields }) as unknown as AgentEvent;

  it('renders a session from its events, each event once', () => {
    const view = new SessionView({
      rendermime: new RenderMimeRegistry({ initialFactories: standardRendererFactories }),
      languages: new EditorLanguageRegistry(),
      openNotebook: () => undefined,
      scrollHost: () => document.body,
      trans
    });
    Widget.attach(view, document.body);
    const started = event(3, {
      type: 'cell_started',
      cell_id: 'c1',
      tool_call_id: 't1',
      kind: 'python',
      code: 'df.shape'
    });
    const events = [
      event(1, { type: 'user_message', text: 'How big is df?' }),
      event(2, { type: 'status_changed', status: 'running', reason: '' }),
      started,
      started, // a repeat (e.g. after a reconnect) is ignored
      event(4, {
        type: 'cell_finished',
        cell_id: 'c1',
        status: 'ok',
        outputs: [
          {
            output_type: 'execute_result',
            execution_count: 2,
            data: { 'text/plain': '(4, 2)' },
            metadata: {}
          }
        ],
        execution_count: 2,
        started_at: 0,
        finished_at: 1,
        truncated: false,
        detail: '',
        manifest: null
      }),
      event(5, { type: 'status_changed', status: 'completed', reason: '' }),
      event(6, {
        type: 'session_finished',
        status: 'completed',
        answer: 'df has 4 rows.',
        reason: '',
        usage: { input_tokens: 10, output_tokens: 5, cached_input_tokens: 0, requests: 1 }
      })
    ];
    events.forEach(item => view.handle(item));
    const cells = view.node.querySelectorAll('.jp-KernelAgent-cell');
    expect(cells).toHaveLength(1);
    expect(cells[0].classList.contains('jp-mod-ok')).toBe(true);
    expect(cells[0].textContent).toContain('[2]');
    expect(view.node.querySelector('.jp-KernelAgent-user')?.textContent).toBe('How big is df?');
    expect(view.node.querySelector('.jp-KernelAgent-final')?.textContent).toContain('Answer');
    expect(view.node.textContent).toContain('15 tokens');
    view.dispose();
  });
});
