/**
 * A pending action the agent wants to run, waiting for a person:
 * Approve, Edit (change the code, then "Approve edited"), or Reject (with a reason).
 */
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { checkIcon, closeIcon, editIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { IApprovalDecided, IApprovalRequested } from './api';
import { button, errorText, h } from './dom';
import { codeBlock } from './render';

/** What an approval is for, as the title names it. */
const APPROVAL_SUBJECT: Record<IApprovalRequested['kind'], string> = {
  python: 'Python cell',
  shell: 'shell command',
  host_tool: 'tool call'
};

export interface IApprovalActions {
  /** `code` is the edited code, or undefined to run the code as proposed. */
  approve(code?: string): Promise<void>;
  reject(reason?: string): Promise<void>;
}

type Mode = 'choose' | 'edit' | 'reject' | 'sending' | 'closed';

export class ApprovalCard extends Widget {
  readonly cellId: string;
  private mode: Mode = 'choose';
  private readonly codeSlot: HTMLElement;
  private readonly actionsSlot: HTMLElement;
  private readonly messageSlot: HTMLElement;
  private editor: HTMLTextAreaElement | null = null;

  constructor(
    private readonly request: IApprovalRequested,
    private readonly actions: IApprovalActions,
    private readonly languages: IEditorLanguageRegistry
  ) {
    super();
    this.cellId = request.cell_id;
    this.addClass('jp-KernelAgent-approval');
    this.node.dataset.cellId = request.cell_id;
    this.codeSlot = h('div', { class: 'jp-KernelAgent-approvalCode' });
    this.actionsSlot = h('div', { class: 'jp-KernelAgent-actions' });
    this.messageSlot = h('div', { class: 'jp-KernelAgent-approvalMessage' });
    this.node.append(
      h(
        'div',
        { class: 'jp-KernelAgent-approvalTitle' },
        `Approve this ${APPROVAL_SUBJECT[request.kind]}?`
      ),
      h('div', { class: 'jp-KernelAgent-muted' }, request.reason),
      this.codeSlot,
      this.messageSlot,
      this.actionsSlot
    );
    this.render();
  }

  get isPending(): boolean {
    return this.mode !== 'closed';
  }

  /** The decision arrived (from this panel, the CLI or another browser). */
  decided(event: IApprovalDecided): void {
    const by = event.decided_by ? ` by ${event.decided_by}` : '';
    const text =
      event.decision === 'rejected'
        ? `Rejected${by}${event.reason ? `: ${event.reason}` : ''}`
        : event.decision === 'edited'
          ? `Approved with edits${by}`
          : `Approved${by}`;
    this.settle(text, `jp-mod-${event.decision}`);
    if (event.decision === 'edited') {
      this.codeSlot.replaceChildren(codeBlock(this.languages, event.code, this.request.kind));
    }
  }

  /** The session ended or moved on without a decision. */
  expire(reason: string): void {
    if (this.isPending) {
      this.settle(reason, 'jp-mod-expired');
    }
  }

  private settle(text: string, className: string): void {
    this.mode = 'closed';
    this.addClass('jp-mod-decided');
    this.addClass(className);
    this.render();
    this.messageSlot.textContent = text;
  }

  private render(): void {
    const { request } = this;
    this.messageSlot.textContent = '';
    if (this.mode === 'edit') {
      this.editor = h('textarea', {
        class: 'jp-KernelAgent-editor',
        spellcheck: 'false',
        'aria-label': 'Edited code'
      });
      this.editor.value = request.code;
      this.editor.rows = Math.min(20, request.code.split('\n').length + 1);
      this.codeSlot.replaceChildren(this.editor);
      this.actionsSlot.replaceChildren(
        button({
          label: 'Approve edited',
          icon: checkIcon,
          kind: 'accept',
          onClick: () => this.send(() => this.actions.approve(this.editor!.value))
        }),
        button({ label: 'Cancel', onClick: () => this.setMode('choose') })
      );
      this.editor.focus();
      return;
    }
    this.codeSlot.replaceChildren(codeBlock(this.languages, request.code, request.kind));
    if (this.mode === 'reject') {
      const reason = h('input', {
        class: 'jp-mod-styled jp-KernelAgent-input',
        type: 'text',
        placeholder: 'Why? (the model reads this)',
        'aria-label': 'Reason for rejecting'
      });
      const confirm = () => this.send(() => this.actions.reject(reason.value.trim()));
      reason.addEventListener('keydown', event => {
        if (event.key === 'Enter') {
          confirm();
        }
      });
      this.actionsSlot.replaceChildren(
        reason,
        button({ label: 'Reject', icon: closeIcon, kind: 'reject', onClick: confirm }),
        button({ label: 'Cancel', onClick: () => this.setMode('choose') })
      );
      reason.focus();
      return;
    }
    if (this.mode === 'choose') {
      this.actionsSlot.replaceChildren(
        button({
          label: 'Approve',
          icon: checkIcon,
          kind: 'accept',
          onClick: () => this.send(() => this.actions.approve())
        }),
        button({ label: 'Edit', icon: editIcon, onClick: () => this.setMode('edit') }),
        button({
          label: 'Reject',
          icon: closeIcon,
          kind: 'reject',
          onClick: () => this.setMode('reject')
        })
      );
      return;
    }
    // sending or closed: no buttons
    this.actionsSlot.replaceChildren();
  }

  private setMode(mode: Mode): void {
    this.mode = mode;
    this.render();
  }

  /** Send the decision; the card closes when the `approval_decided` event comes back. */
  private async send(call: () => Promise<void>): Promise<void> {
    const previous = this.mode;
    const buttons = this.actionsSlot.querySelectorAll('button, input, textarea');
    buttons.forEach(element => element.setAttribute('disabled', ''));
    this.editor?.setAttribute('readonly', '');
    try {
      await call();
      if (this.mode !== 'closed') {
        this.mode = 'sending';
        this.actionsSlot.replaceChildren();
        this.messageSlot.textContent = 'Sent; waiting for the agent…';
      }
    } catch (error) {
      buttons.forEach(element => element.removeAttribute('disabled'));
      this.editor?.removeAttribute('readonly');
      this.mode = previous;
      this.messageSlot.textContent = `Could not send the decision: ${errorText(error)}`;
    }
  }
}
