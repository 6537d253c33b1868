/**
 * kernelagent's JupyterLab panel: start agent sessions, watch them live, approve
 * actions, open and replay the notebooks they record.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { kernelAgentIcon } from './icons';
import { KernelAgentPanel } from './panel';

const OPEN_COMMAND = 'kernelagent:open-panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'kernelagent-panel:plugin',
  description: 'A side panel to run kernelagent sessions and watch them live.',
  autoStart: true,
  requires: [IRenderMimeRegistry, IEditorLanguageRegistry],
  optional: [ICommandPalette, IDocumentManager, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    rendermime: IRenderMimeRegistry,
    languages: IEditorLanguageRegistry,
    palette: ICommandPalette | null,
    docManager: IDocumentManager | null,
    restorer: ILayoutRestorer | null
  ) => {
    const openNotebook = (path: string): void => {
      // In the main area, next to the panel; an open notebook is brought to the front.
      if (docManager) {
        docManager.openOrReveal(path);
      } else {
        void app.commands.execute('docmanager:open', { path });
      }
    };

    const panel = new KernelAgentPanel({ rendermime, languages, openNotebook });
    app.shell.add(panel, 'right', { rank: 650 });
    restorer?.add(panel, 'kernelagent-panel');

    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Open kernelagent panel',
      caption: 'Run an agent in a sandboxed kernel and watch it work',
      icon: kernelAgentIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    palette?.addItem({ command: OPEN_COMMAND, category: 'kernelagent' });
  }
};

export default plugin;
