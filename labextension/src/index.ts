/**
 * kernelagent's JupyterLab panel: start agent sessions, watch them live, approve
 * actions, open and replay the notebooks they record; and "Ask kernelagent in this
 * notebook", which lets the agent work in the notebook you have open, on its kernel.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { ITranslator, nullTranslator, TranslationBundle } from '@jupyterlab/translation';

import { kernelAgentIcon } from './icons';
import { KernelAgentPanel } from './panel';
import { SessionView } from './session-view';

const PLUGIN_ID = 'kernelagent-panel:plugin';
const OPEN_COMMAND = 'kernelagent:open-panel';
const ASK_COMMAND = 'kernelagent:ask-in-notebook';
const OPEN_SESSION_COMMAND = 'kernelagent:open-session';
const SANDBOX_PROVISIONER = 'kernelagent-docker';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A side panel to run kernelagent sessions and watch them live.',
  autoStart: true,
  requires: [IRenderMimeRegistry, IEditorLanguageRegistry],
  optional: [
    ICommandPalette,
    IDocumentManager,
    ILayoutRestorer,
    INotebookTracker,
    ISettingRegistry,
    IStateDB,
    ITranslator,
    IEditorServices
  ],
  activate: async (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    languages: IEditorLanguageRegistry,
    palette: ICommandPalette | null,
    docManager: IDocumentManager | null,
    restorer: ILayoutRestorer | null,
    tracker: INotebookTracker | null,
    settingRegistry: ISettingRegistry | null,
    state: IStateDB | null,
    translator: ITranslator | null,
    editorServices: IEditorServices | null
  ) => {
    const editorFactory = editorServices?.factoryService.newInlineEditor ?? null;
    const trans = (translator ?? nullTranslator).load('kernelagent');
    let settings: ISettingRegistry.ISettings | null = null;
    try {
      settings = settingRegistry ? await settingRegistry.load(PLUGIN_ID) : null;
    } catch (error) {
      console.warn('kernelagent: cannot load the settings', error);
    }

    const openNotebook = (path: string): void => {
      // In the main area, next to the panel; an open notebook is brought to the front.
      if (docManager) {
        docManager.openOrReveal(path);
      } else {
        void app.commands.execute('docmanager:open', { path });
      }
    };

    const sessionWidgets = new Map<string, MainAreaWidget<SessionView>>();
    const openSession = (id: string): void => {
      const open = sessionWidgets.get(id);
      if (open && !open.isDisposed) {
        app.shell.activateById(open.id);
        return;
      }
      const widget: MainAreaWidget<SessionView> = new MainAreaWidget({
        content: new SessionView({
          rendermime,
          languages,
          openNotebook,
          scrollHost: () => widget.content.node,
          editorFactory,
          trans
        })
      });
      widget.id = `kernelagent-session-${id}`;
      widget.addClass('jp-KernelAgent-mainSession');
      widget.title.icon = kernelAgentIcon;
      widget.title.label = trans.__('kernelagent session');
      widget.title.closable = true;
      widget.content.loaded.connect((_, session) => {
        widget.title.label = trans.__('kernelagent: %1', session.task);
        widget.title.caption = session.task;
      });
      sessionWidgets.set(id, widget);
      // Next to the notebook the person works in (or the current document).
      const ref = tracker?.currentWidget?.id ?? null;
      app.shell.add(widget, 'main', { mode: ref ? 'split-right' : 'tab-after', ref });
      void widget.content.load(id);
      app.shell.activateById(widget.id);
    };

    const panel = new KernelAgentPanel({
      rendermime,
      languages,
      openNotebook,
      openSession,
      findNotebook: async path => {
        await app.restored;
        return tracker?.find(widget => widget.context.path === path) ?? null;
      },
      editorFactory,
      settings,
      state,
      trans
    });
    app.shell.add(panel, 'right', { rank: 650 });
    restorer?.add(panel, 'kernelagent-panel');

    app.commands.addCommand(OPEN_COMMAND, {
      label: trans.__('Open kernelagent panel'),
      caption: trans.__('Run an agent in a sandboxed kernel and watch it work'),
      icon: kernelAgentIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'kernelagent' });

    app.commands.addCommand(OPEN_SESSION_COMMAND, {
      label: trans.__('Open kernelagent session'),
      caption: trans.__('Show a session in the main area, full width'),
      icon: kernelAgentIcon,
      execute: args => {
        const id = (args.id as string) ?? panel.view.currentId;
        if (id) {
          openSession(id);
        }
      }
    });

    app.commands.addCommand(ASK_COMMAND, {
      label: trans.__('Ask kernelagent in this notebook'),
      caption: trans.__(
        'Let the agent work in this notebook: its cells go below the active cell and run on ' +
          "the notebook's sandboxed kernel, with your variables"
      ),
      icon: kernelAgentIcon,
      isEnabled: () => !!tracker?.currentWidget,
      execute: async () => {
        const notebook = tracker?.currentWidget;
        if (!notebook) {
          await showErrorMessage(
            trans.__('No notebook'),
            trans.__('Open a notebook first: kernelagent works in the active notebook.')
          );
          return;
        }
        await notebook.context.ready;
        if (!(await ensureSandboxKernel(app, notebook, trans))) {
          return;
        }
        panel.bindNotebook(notebook);
        app.shell.activateById(panel.id);
        panel.form.focusTask();
      }
    });
    palette?.addItem({ command: ASK_COMMAND, category: 'kernelagent' });
  }
};

/** The kernelspecs whose kernels run in kernelagent's Docker sandbox. */
async function sandboxKernelNames(app: JupyterFrontEnd): Promise<string[]> {
  const manager = app.serviceManager.kernelspecs;
  await manager.ready;
  const specs = manager.specs?.kernelspecs ?? {};
  return Object.values(specs)
    .filter(spec => {
      const provisioner = (spec?.metadata as any)?.kernel_provisioner;
      return provisioner?.provisioner_name === SANDBOX_PROVISIONER;
    })
    .map(spec => spec!.name);
}

/**
 * Whether the notebook runs on the sandbox kernel; if not, offer to switch, saying why.
 */
async function ensureSandboxKernel(
  app: JupyterFrontEnd,
  notebook: NotebookPanel,
  trans: TranslationBundle
): Promise<boolean> {
  const context = notebook.sessionContext;
  await context.ready;
  const names = await sandboxKernelNames(app);
  const current = context.session?.kernel?.name;
  if (current && names.includes(current)) {
    return true;
  }
  if (!names.length) {
    await showErrorMessage(
      trans.__('No kernelagent sandbox kernel'),
      trans.__(
        'kernelagent works only in notebooks on its sandbox kernel. Install it with ' +
          '`kernelagent kernelspec install`, then reload JupyterLab.'
      )
    );
    return false;
  }
  const result = await showDialog({
    title: trans.__('Switch to the kernelagent sandbox kernel?'),
    body: trans.__(
      'This notebook runs on %1. kernelagent runs its code only on the sandbox kernel: a ' +
        'Docker container with no network and limited memory that sees only this ' +
        "notebook's folder, so the agent's code cannot touch the rest of your machine. " +
        'After switching, run your cells again: the new kernel starts empty.',
      context.kernelDisplayName
    ),
    buttons: [
      Dialog.cancelButton({ label: trans.__('Cancel') }),
      Dialog.okButton({ label: trans.__('Switch kernel') })
    ]
  });
  if (!result.button.accept) {
    return false;
  }
  await context.changeKernel({ name: names[0] });
  return true;
}

export default plugin;
