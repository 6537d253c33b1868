/**
 * The task box: what to do, which data files to give the agent, and (collapsed) the
 * model and sandbox settings, which are the plugin's settings in JupyterLab's setting
 * registry (Settings > Settings Editor > kernelagent shows the same).
 */
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { TranslationBundle } from '@jupyterlab/translation';
import { caretDownIcon, caretRightIcon, runIcon } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { ApiKind, ApprovalMode, ICreateSessionRequest, SandboxKind } from './api';
import { button, h } from './dom';

/** The form's settings: the plugin's settings in the registry (schema/plugin.json). */
const FIELDS = [
  'model',
  'base_url',
  'api',
  'sandbox',
  'approve',
  'max_steps',
  'attempts',
  'allow_net'
] as const;
type Field = (typeof FIELDS)[number];
const NUMBERS: ReadonlySet<Field> = new Set(['max_steps', 'attempts']);

export interface IPromptFormOptions {
  /** The plugin's settings (null: not persisted, e.g. in tests). */
  settings: ISettingRegistry.ISettings | null;
  trans: TranslationBundle;
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
  private readonly fields: Record<Field, HTMLInputElement | HTMLSelectElement>;
  private readonly settings: ISettingRegistry.ISettings | null;
  private readonly trans: TranslationBundle;
  private bound = false;
  private busy = false;
  /** Fields whose new value is being saved: a settings change does not overwrite them. */
  private readonly saving = new Set<Field>();
  private readonly settingsBody: HTMLElement;
  private readonly settingsToggle: HTMLButtonElement;
  private readonly runButton: HTMLButtonElement;
  private readonly errorNode = h('div', { class: 'jp-KernelAgent-error' });

  constructor(options: IPromptFormOptions) {
    super();
    const trans = (this.trans = options.trans);
    this.settings = options.settings;
    this.addClass('jp-KernelAgent-form');
    this.task = h('textarea', {
      class: 'jp-mod-styled jp-KernelAgent-textarea jp-KernelAgent-task',
      rows: '3',
      placeholder: trans.__(
        'What should the agent do? e.g. Which region has the highest revenue? Plot it.'
      ),
      'aria-label': trans.__('Task')
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

    this.fields = {
      model: this.textField('model', trans.__('server default (e.g. gpt-4.1-mini)')),
      base_url: this.textField('base_url', trans.__('OpenAI, or e.g. http://127.0.0.1:8080/v1')),
      api: this.selectField('api', ['', 'responses', 'chat', 'code-blocks']),
      sandbox: this.selectField('sandbox', ['', 'docker', 'local']),
      approve: this.selectField('approve', ['', 'never', 'shell', 'always']),
      max_steps: this.textField('max_steps', trans.__('server default'), 'number'),
      attempts: this.textField('attempts', trans.__('server default'), 'number'),
      allow_net: this.textField(
        'allow_net',
        trans.__('none, e.g. pypi.org, files.pythonhosted.org:443')
      )
    };
    this.loadSettings();
    this.settings?.changed.connect(() => this.loadSettings(true));
    for (const [name, field] of Object.entries(this.fields)) {
      field.addEventListener('change', () => void this.saveSetting(name as Field));
    }

    this.settingsBody = h(
      'div',
      { class: 'jp-KernelAgent-settings' },
      this.row(trans.__('Model'), this.fields.model),
      this.row(trans.__('Base URL'), this.fields.base_url),
      this.row(trans.__('API'), this.fields.api),
      this.row(trans.__('Sandbox'), this.fields.sandbox),
      this.row(trans.__('Approve'), this.fields.approve),
      this.row(trans.__('Max steps'), this.fields.max_steps),
      this.row(trans.__('Attempts'), this.fields.attempts),
      this.row(trans.__('Allow network'), this.fields.allow_net)
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
      label: trans.__('Run'),
      icon: runIcon,
      kind: 'accept',
      title: trans.__('Start a session (Ctrl+Enter)'),
      className: 'jp-KernelAgent-run',
      onClick: () => this.submit()
    });

    this.node.append(
      this.task,
      h(
        'label',
        { class: 'jp-KernelAgent-label' },
        trans.__('Data files (comma-separated, relative to the server root)'),
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
    this.busy = busy;
    this.runButton.disabled = busy;
    this.updateRunLabel();
  }

  /** Bound to a notebook, the form asks the agent to work in it (no data files). */
  setBound(bound: boolean): void {
    this.bound = bound;
    this.data.parentElement!.hidden = bound;
    this.updateRunLabel();
  }

  focusTask(): void {
    this.task.focus();
  }

  /** What the agent's text becomes when it works in a notebook. */
  get notebookText(): 'markdown' | 'panel' {
    return this.settings?.composite.notebookText === 'panel' ? 'panel' : 'markdown';
  }

  private updateRunLabel(): void {
    const trans = this.trans;
    const label = this.busy
      ? trans.__('Starting…')
      : this.bound
        ? trans.__('Ask')
        : trans.__('Run');
    this.runButton.lastElementChild!.textContent = label;
    this.runButton.title = this.bound
      ? trans.__('Ask the agent to work in the bound notebook (Ctrl+Enter)')
      : trans.__('Start a session (Ctrl+Enter)');
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
      this.showError(this.trans.__('Write a task first.'));
      this.task.focus();
      return;
    }
    this.showError('');
    const request: ICreateSessionRequest = { task, data: parsePaths(this.data.value) };
    const value = (name: Field) => this.fields[name].value.trim();
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
      h('span', {}, this.trans.__('Settings'))
    );
  }

  /** The fields from the settings; `sparing` leaves alone the ones being edited. */
  private loadSettings(sparing = false): void {
    for (const name of FIELDS) {
      const field = this.fields[name];
      if (sparing && (this.saving.has(name) || document.activeElement === field)) {
        continue;
      }
      const value = this.settings?.composite[name];
      field.value = value === null || value === undefined ? '' : String(value);
    }
  }

  private async saveSetting(name: Field): Promise<void> {
    if (!this.settings) {
      return;
    }
    const text = this.fields[name].value.trim();
    const number = parseInt(text, 10);
    const value = NUMBERS.has(name) ? (number > 0 ? number : null) : text;
    this.saving.add(name);
    try {
      await this.settings.set(name, value);
    } catch (error) {
      this.showError(this.trans.__('Could not save the setting %1: %2', name, String(error)));
    } finally {
      this.saving.delete(name);
    }
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
      select.append(h('option', { value }, value || this.trans.__('server default')));
    }
    return select;
  }

  private row(label: string, field: HTMLElement): HTMLElement {
    return h('label', { class: 'jp-KernelAgent-settingRow' }, h('span', {}, label), field);
  }
}
