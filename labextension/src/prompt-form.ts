/**
 * The task box: what to do, which data files to give the agent, and (collapsed) the
 * model and sandbox settings. The settings are remembered in the browser.
 */
import { caretDownIcon, caretRightIcon, runIcon } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { ApiKind, ApprovalMode, ICreateSessionRequest, SandboxKind } from './api';
import { button, h } from './dom';

const STORAGE_KEY = 'kernelagent-panel:settings';

interface ISettings {
  model: string;
  base_url: string;
  api: string;
  sandbox: string;
  approve: string;
  max_steps: string;
  attempts: string;
  allow_net: string;
}

const EMPTY: ISettings = {
  model: '',
  base_url: '',
  api: '',
  sandbox: '',
  approve: '',
  max_steps: '',
  attempts: '',
  allow_net: ''
};

function loadSettings(): ISettings {
  try {
    return { ...EMPTY, ...JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}') };
  } catch {
    return { ...EMPTY };
  }
}

/** `a.csv, data/b.csv` -> ['a.csv', 'data/b.csv'] */
export function parsePaths(text: string): string[] {
  return text
    .split(',')
    .map(path => path.trim().replace(/^\/+/, ''))
    .filter(path => path.length > 0);
}

/** `pypi.org, files.pythonhosted.org:443` -> ['pypi.org', 'files.pythonhosted.org:443'] */
export function parseDestinations(text: string): string[] {
  return text.split(/[\s,]+/).filter(item => item.length > 0);
}

export class PromptForm extends Widget {
  private readonly submittedSignal = new Signal<this, ICreateSessionRequest>(this);
  private readonly task: HTMLTextAreaElement;
  private readonly data: HTMLInputElement;
  private readonly fields: Record<keyof ISettings, HTMLInputElement | HTMLSelectElement>;
  private readonly settingsBody: HTMLElement;
  private readonly settingsToggle: HTMLButtonElement;
  private readonly runButton: HTMLButtonElement;
  private readonly errorNode = h('div', { class: 'jp-KernelAgent-error' });

  constructor() {
    super();
    this.addClass('jp-KernelAgent-form');
    this.task = h('textarea', {
      class: 'jp-mod-styled jp-KernelAgent-textarea jp-KernelAgent-task',
      rows: '3',
      placeholder: 'What should the agent do? e.g. Which region has the highest revenue? Plot it.',
      'aria-label': 'Task'
    });
    this.task.addEventListener('keydown', event => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        this.submit();
      }
    });
    this.data = h('input', {
      class: 'jp-mod-styled jp-KernelAgent-input jp-KernelAgent-data',
      type: 'text',
      placeholder: 'sales.csv, data/other.csv'
    });

    const saved = loadSettings();
    this.fields = {
      model: this.textField('model', 'server default (e.g. gpt-4.1-mini)'),
      base_url: this.textField('base_url', 'OpenAI, or e.g. http://127.0.0.1:8080/v1'),
      api: this.selectField('api', ['', 'responses', 'chat', 'code-blocks']),
      sandbox: this.selectField('sandbox', ['', 'docker', 'local']),
      approve: this.selectField('approve', ['', 'never', 'shell', 'always']),
      max_steps: this.textField('max_steps', 'server default', 'number'),
      attempts: this.textField('attempts', 'server default', 'number'),
      allow_net: this.textField('allow_net', 'none, e.g. pypi.org, files.pythonhosted.org:443')
    };
    for (const [name, field] of Object.entries(this.fields)) {
      field.value = saved[name as keyof ISettings];
      field.addEventListener('change', () => this.saveSettings());
    }

    this.settingsBody = h(
      'div',
      { class: 'jp-KernelAgent-settings' },
      this.row('Model', this.fields.model),
      this.row('Base URL', this.fields.base_url),
      this.row('API', this.fields.api),
      this.row('Sandbox', this.fields.sandbox),
      this.row('Approve', this.fields.approve),
      this.row('Max steps', this.fields.max_steps),
      this.row('Attempts', this.fields.attempts),
      this.row('Allow network', this.fields.allow_net)
    );
    this.settingsToggle = h('button', {
      type: 'button',
      class: 'jp-KernelAgent-toggle',
      'aria-expanded': 'false'
    });
    this.settingsToggle.addEventListener('click', () =>
      this.setSettingsOpen(this.settingsBody.hidden)
    );
    this.setSettingsOpen(false);

    this.runButton = button({
      label: 'Run',
      icon: runIcon,
      kind: 'accept',
      title: 'Start a session (Ctrl+Enter)',
      className: 'jp-KernelAgent-run',
      onClick: () => this.submit()
    });

    this.node.append(
      this.task,
      h(
        'label',
        { class: 'jp-KernelAgent-label' },
        'Data files (comma-separated, relative to the server root)',
        this.data
      ),
      this.settingsToggle,
      this.settingsBody,
      h('div', { class: 'jp-KernelAgent-actions' }, this.runButton),
      this.errorNode
    );
  }

  /** Emitted with the request when the person clicks Run. */
  get submitted(): ISignal<this, ICreateSessionRequest> {
    return this.submittedSignal;
  }

  /** While the server starts the session (its sandbox comes up first). */
  setBusy(busy: boolean): void {
    this.runButton.disabled = busy;
    this.runButton.lastElementChild!.textContent = busy ? 'Starting…' : 'Run';
  }

  showError(message: string): void {
    this.errorNode.textContent = message;
  }

  /** Empty the task once its session has started. */
  clearTask(): void {
    this.task.value = '';
  }

  private submit(): void {
    const task = this.task.value.trim();
    if (!task) {
      this.showError('Write a task first.');
      this.task.focus();
      return;
    }
    this.showError('');
    const request: ICreateSessionRequest = { task, data: parsePaths(this.data.value) };
    const value = (name: keyof ISettings) => this.fields[name].value.trim();
    if (value('model')) {
      request.model = value('model');
    }
    if (value('base_url')) {
      request.base_url = value('base_url');
    }
    if (value('api')) {
      request.api = value('api') as ApiKind;
    }
    if (value('sandbox')) {
      request.sandbox = value('sandbox') as SandboxKind;
    }
    if (value('approve')) {
      request.approve = value('approve') as ApprovalMode;
    }
    const allowNet = parseDestinations(value('allow_net'));
    if (allowNet.length > 0) {
      request.allow_net = allowNet;
    }
    const steps = parseInt(value('max_steps'), 10);
    if (steps > 0) {
      request.max_steps = steps;
    }
    const attempts = parseInt(value('attempts'), 10);
    if (attempts > 0) {
      request.attempts = attempts;
    }
    this.submittedSignal.emit(request);
  }

  private setSettingsOpen(open: boolean): void {
    this.settingsBody.hidden = !open;
    this.settingsToggle.setAttribute('aria-expanded', String(open));
    this.settingsToggle.replaceChildren(
      (open ? caretDownIcon : caretRightIcon).element({
        tag: 'span',
        className: 'jp-KernelAgent-caret'
      }),
      h('span', {}, 'Settings')
    );
  }

  private saveSettings(): void {
    const settings = { ...EMPTY };
    for (const name of Object.keys(settings) as (keyof ISettings)[]) {
      settings[name] = this.fields[name].value;
    }
    localStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
  }

  private textField(name: string, placeholder: string, type = 'text'): HTMLInputElement {
    return h('input', {
      class: 'jp-mod-styled jp-KernelAgent-input',
      type,
      name,
      min: type === 'number' ? '1' : undefined,
      placeholder
    });
  }

  private selectField(name: string, values: string[]): HTMLSelectElement {
    const select = h('select', { class: 'jp-mod-styled jp-KernelAgent-select', name });
    for (const value of values) {
      select.append(h('option', { value }, value || 'server default'));
    }
    return select;
  }

  private row(label: string, field: HTMLElement): HTMLElement {
    return h('label', { class: 'jp-KernelAgent-settingRow' }, h('span', {}, label), field);
  }
}
