/**
 * The follow-up box under a finished session: the next instruction, and Send.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { runIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { button, errorText, h } from './dom';

export class FollowUpBox extends Widget {
  private readonly text: HTMLTextAreaElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly errorNode = h('div', { class: 'jp-KernelAgent-error' });

  constructor(
    private readonly trans: TranslationBundle,
    private readonly send: (text: string) => Promise<void>
  ) {
    super();
    this.addClass('jp-KernelAgent-followUp');
    this.sendButton = button({
      label: trans.__('Send'),
      icon: runIcon,
      kind: 'accept',
      title: trans.__('Continue the session with this instruction (Ctrl+Enter)'),
      onClick: () => void this.submit()
    });
    this.text = h('textarea', {
      class: 'jp-mod-styled jp-KernelAgent-textarea',
      rows: '2',
      placeholder: trans.__('Follow up: what should the agent do next?'),
      'aria-label': trans.__('Follow-up instruction')
    });
    this.text.addEventListener('keydown', event => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        void this.submit();
      }
    });
    this.node.append(
      this.text,
      h('div', { class: 'jp-KernelAgent-actions' }, this.sendButton),
      this.errorNode
    );
  }

  showError(message: string): void {
    this.errorNode.textContent = message;
  }

  private async submit(): Promise<void> {
    const text = this.text.value.trim();
    if (!text) {
      return;
    }
    const trans = this.trans;
    this.showError('');
    this.text.disabled = true;
    this.sendButton.disabled = true;
    this.sendButton.lastElementChild!.textContent = trans.__('Sending…');
    try {
      await this.send(text);
      this.text.value = '';
    } catch (error) {
      this.showError(trans.__('Could not send: %1', errorText(error)));
    } finally {
      this.text.disabled = false;
      this.sendButton.disabled = false;
      this.sendButton.lastElementChild!.textContent = trans.__('Send');
    }
  }
}
