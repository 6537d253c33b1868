/**
 * The right-side panel: a task form, the list of sessions, and the selected session.
 */
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel } from '@lumino/widgets';

import * as api from './api';
import { errorText, h } from './dom';
import { kernelAgentIcon } from './icons';
import { PromptForm } from './prompt-form';
import { Section } from './section';
import { SessionList } from './session-list';
import { SessionView } from './session-view';

/** How often the session list is refreshed while the panel is visible. */
const LIST_REFRESH_MS = 5000;

export interface IPanelOptions {
  rendermime: IRenderMimeRegistry;
  languages: IEditorLanguageRegistry;
  openNotebook: (path: string) => void;
}

export class KernelAgentPanel extends Panel {
  readonly form = new PromptForm();
  readonly list = new SessionList();
  readonly view: SessionView;
  private readonly formSection: Section;
  private timer: number | undefined;

  constructor(options: IPanelOptions) {
    super();
    this.id = 'kernelagent-panel';
    this.addClass('jp-KernelAgent-panel');
    this.title.icon = kernelAgentIcon;
    this.title.caption = 'kernelagent: an agent that works in a sandboxed kernel';

    this.view = new SessionView({ ...options, scrollHost: () => this.node });
    this.formSection = new Section('New task', this.form);
    const refresh = h('button', {
      type: 'button',
      class: 'jp-KernelAgent-iconButton',
      title: 'Refresh the list'
    });
    refresh.append(refreshIcon.element({ tag: 'span' }));
    refresh.addEventListener('click', () => void this.list.refresh());

    this.addWidget(this.formSection);
    this.addWidget(new Section('Sessions', this.list, [refresh]));
    this.addWidget(this.view);

    this.form.submitted.connect((_, request) => void this.start(request));
    this.list.selected.connect((_, id) => this.showSession(id));
    this.view.statusChanged.connect(() => void this.list.refresh());
  }

  /** Show a session (from the list, or one just started). */
  showSession(id: string): void {
    this.list.setCurrent(id);
    void this.view.load(id);
  }

  dispose(): void {
    window.clearInterval(this.timer);
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.list.refresh();
    window.clearInterval(this.timer);
    this.timer = window.setInterval(() => void this.list.refresh(), LIST_REFRESH_MS);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    window.clearInterval(this.timer);
  }

  private async start(request: api.ICreateSessionRequest): Promise<void> {
    this.form.setBusy(true);
    try {
      const session = await api.createSession(request);
      this.form.clearTask();
      this.showSession(session.id);
      await this.list.refresh();
    } catch (error) {
      this.form.showError(`Could not start the session: ${errorText(error)}`);
    } finally {
      this.form.setBusy(false);
    }
  }
}
