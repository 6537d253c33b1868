/**
 * The right-side panel: a task form, the list of sessions, what the agent remembers
 * across sessions, and the selected session.
 *
 * Bound to a notebook ("Ask kernelagent in this notebook"), the form asks the agent to
 * work in that notebook: its cells go into the notebook and run on its kernel.
 */
import { CodeEditor } from '@jupyterlab/codeeditor';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { TranslationBundle } from '@jupyterlab/translation';
import {
  closeIcon,
  launchIcon,
  refreshIcon,
  Toolbar,
  ToolbarButton
} from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Panel, Widget } from '@lumino/widgets';

import * as api from './api';
import { errorText, h } from './dom';
import { kernelAgentIcon } from './icons';
import { MemoryList } from './memory-list';
import { NotebookAgent } from './notebook-agent';
import { inspectKernel, summariseCells } from './notebook-context';
import { PromptForm } from './prompt-form';
import { Section } from './section';
import { SessionList } from './session-list';
import { SessionView } from './session-view';

/** How often the session list is refreshed while the panel is visible. */
const LIST_REFRESH_MS = 5000;
/** The panel's UI state in the state database: the session shown. */
const STATE_KEY = 'kernelagent-panel:state';

export interface IPanelOptions {
  rendermime: IRenderMimeRegistry;
  languages: IEditorLanguageRegistry;
  openNotebook: (path: string) => void;
  /** JupyterLab's inline editor factory (approval edits). */
  editorFactory: CodeEditor.Factory | null;
  /** The open notebook at a path (once JupyterLab has restored its layout), if any. */
  findNotebook: (path: string) => Promise<NotebookPanel | null>;
  /** Show a session in the main area, full width. */
  openSession: (id: string) => void;
  settings: ISettingRegistry.ISettings | null;
  state: IStateDB | null;
  trans: TranslationBundle;
}

export class KernelAgentPanel extends Panel {
  readonly form: PromptForm;
  readonly list: SessionList;
  readonly memories: MemoryList;
  readonly view: SessionView;
  private readonly formSection: Section;
  private readonly bindingWidget = new Panel();
  private readonly bindingText = h('span', { class: 'jp-KernelAgent-bindingText' });
  private readonly poll: Poll;
  private readonly trans: TranslationBundle;
  private bound: NotebookPanel | null = null;
  private readonly agents = new Map<string, NotebookAgent>();

  constructor(private readonly options: IPanelOptions) {
    super();
    const trans = (this.trans = options.trans);
    this.id = 'kernelagent-panel';
    this.addClass('jp-KernelAgent-panel');
    this.title.icon = kernelAgentIcon;
    this.title.caption = trans.__('kernelagent: an agent that works in a sandboxed kernel');

    this.form = new PromptForm({ settings: options.settings, trans });
    this.list = new SessionList(trans);
    this.memories = new MemoryList({ trans, openSession: id => this.showSession(id) });
    this.view = new SessionView({
      ...options,
      scrollHost: () => this.node,
      stopSession: id => this.stopSession(id)
    });
    this.formSection = new Section(trans.__('New task'), this.form);
    const refresh = new ToolbarButton({
      icon: refreshIcon,
      tooltip: trans.__('Refresh the list'),
      onClick: () => void this.list.refresh()
    });
    const openInMain = new ToolbarButton({
      icon: launchIcon,
      label: trans.__('Open session'),
      tooltip: trans.__('Show the selected session in the main area, full width'),
      onClick: () => {
        if (this.view.currentId) {
          options.openSession(this.view.currentId);
        }
      }
    });
    openInMain.addClass('jp-KernelAgent-openSession');

    this.bindingWidget.addClass('jp-KernelAgent-binding');
    this.bindingWidget.addWidget(new Widget({ node: this.bindingText }));
    const bindingTools = new Toolbar();
    bindingTools.addItem(
      'unbind',
      new ToolbarButton({
        icon: closeIcon,
        tooltip: trans.__('Unbind this notebook: the next request starts a session of its own'),
        onClick: () => this.unbind()
      })
    );
    this.bindingWidget.addWidget(bindingTools);
    this.bindingWidget.hide();
    this.addWidget(this.bindingWidget);
    this.addWidget(this.formSection);
    this.addWidget(new Section(trans.__('Sessions'), this.list, [refresh, openInMain]));
    const refreshMemories = new ToolbarButton({
      icon: refreshIcon,
      tooltip: trans.__('Refresh the memories'),
      onClick: () => void this.memories.refresh()
    });
    const memorySection = new Section(trans.__('Memory'), this.memories, [refreshMemories]);
    memorySection.addClass('jp-KernelAgent-memorySection');
    memorySection.setOpen(false); // opened when wanted: it lists every memory
    this.addWidget(memorySection);
    this.addWidget(this.view);

    this.form.submitted.connect((_, request) => void this.start(request));
    this.list.selected.connect((_, id) => this.showSession(id));
    this.view.statusChanged.connect(() => {
      void this.list.refresh();
      if (this.memories.isVisible) {
        void this.memories.refresh(); // a session that ends writes memories
      }
    });
    this.view.loaded.connect((_, session) => void this.takeUp(session));

    this.poll = new Poll({
      factory: () => this.list.refresh(),
      frequency: { interval: LIST_REFRESH_MS, backoff: true, max: 60_000 },
      name: 'kernelagent-panel:sessions',
      standby: () => (this.isVisible ? false : 'when-hidden')
    });
    void this.restoreState();
  }

  /** The notebook the form works in, if any. */
  get boundNotebook(): NotebookPanel | null {
    return this.bound;
  }

  /** Ask in this notebook from now on (until unbound or closed). */
  bindNotebook(notebook: NotebookPanel): void {
    this.bound = notebook;
    this.bindingText.textContent = this.trans.__('Working in %1', notebook.context.path);
    this.bindingText.title = this.trans.__(
      "The agent's cells go into this notebook and run on its kernel"
    );
    this.bindingWidget.show();
    this.form.setBound(true);
    this.formSection.setOpen(true);
    notebook.disposed.connect(() => {
      if (this.bound === notebook) {
        this.unbind();
      }
    });
    this.form.focusTask();
  }

  unbind(): void {
    this.bound = null;
    this.bindingWidget.hide();
    this.form.setBound(false);
  }

  /** Show a session (from the list, or one just started). */
  showSession(id: string): void {
    this.list.setCurrent(id);
    void this.view.load(id);
    void this.options.state?.save(STATE_KEY, { session: id });
  }

  dispose(): void {
    this.poll.dispose();
    this.agents.forEach(agent => agent.dispose());
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.poll.refresh();
  }

  private async restoreState(): Promise<void> {
    const saved = (await this.options.state?.fetch(STATE_KEY)) as { session?: string } | undefined;
    if (saved?.session && !this.view.currentId) {
      this.showSession(saved.session);
    }
  }

  /**
   * A notebook session still at work whose notebook is open, but no agent of this page
   * follows it (the page was reloaded): bind to the notebook and go on where it stands.
   */
  private async takeUp(session: api.ISessionInfo): Promise<void> {
    const active = ['starting', 'running', 'awaiting_approval'].includes(session.status);
    if (!session.in_notebook || !active || this.agents.has(session.id)) {
      return;
    }
    const notebook = await this.options.findNotebook(session.in_notebook);
    if (!notebook || this.agents.has(session.id)) {
      return;
    }
    await notebook.context.ready;
    const { events } = await api.getSession(session.id);
    this.bindNotebook(notebook);
    this.follow(notebook, session.id, events);
  }

  private follow(notebook: NotebookPanel, sessionId: string, history: api.AgentEvent[]): void {
    const agent = new NotebookAgent({
      notebook,
      sessionId,
      textPlacement: this.form.notebookText,
      trans: this.trans
    });
    agent.failed.connect((_, message) =>
      this.form.showError(this.trans.__('In the notebook: %1', message))
    );
    notebook.disposed.connect(() => agent.dispose());
    this.agents.set(sessionId, agent);
    agent.start(history);
  }

  private async stopSession(id: string): Promise<void> {
    const agent = this.agents.get(id);
    if (agent && !agent.isDisposed) {
      await agent.stop();
    } else {
      await api.stop(id);
    }
  }

  private async start(request: api.ICreateSessionRequest): Promise<void> {
    this.form.setBusy(true);
    try {
      const session = this.bound
        ? await this.startInNotebook(this.bound, request)
        : await api.createSession(request);
      this.form.clearTask();
      this.showSession(session.id);
      await this.list.refresh();
    } catch (error) {
      this.form.showError(this.trans.__('Could not start the session: %1', errorText(error)));
    } finally {
      this.form.setBusy(false);
    }
  }

  private async startInNotebook(
    notebook: NotebookPanel,
    request: api.ICreateSessionRequest
  ): Promise<api.ISessionInfo> {
    if (notebook.context.model.dirty) {
      await notebook.context.save();
    }
    // No data files, sandbox or attempts: the session works on the notebook's kernel.
    const { task, model, base_url, api: apiKind, approve, max_steps } = request;
    const active = notebook.content.activeCellIndex;
    const session = await api.createNotebookSession({
      task,
      model,
      base_url,
      api: apiKind,
      approve,
      max_steps,
      notebook_path: notebook.context.path,
      cells: summariseCells(notebook),
      variables: await inspectKernel(notebook),
      active_cell: active >= 0 ? active : null,
      kernel_name: notebook.sessionContext.session?.kernel?.name ?? ''
    });
    this.follow(notebook, session.id, []);
    return session;
  }
}
