/**
 * A pending action the agent wants to run, waiting for a person:
 * Approve, Edit (change the code in a CodeMirror editor from JupyterLab's editor
 * services, then "Approve edited"), or Reject (with a reason).
 */
import { CodeEditor } from '@jupyterlab/codeeditor';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { checkIcon, closeIcon, editIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { IApprovalDecided, IApprovalRequested } from './api';
import { button, errorText, h } from './dom';
import { codeBlock } from './render';

/** What an approval is for, as the title names it. */
/** What the card asks, by the kind of action. */
function approvalQuestion(kind: IApprovalRequested['kind'], trans: TranslationBundle): string {
  const questions: Record<IApprovalRequested['kind'], string> = {
    python: trans.__('Approve this Python cell?'),
    shell: trans.__('Approve this shell command?'),
    host_tool: trans.__('Approve this tool call?')
  };
  return questions[kind] ?? trans.__('Approve this action?');
}

export interface IApprovalActions {
  /** `code` is the edited code, or undefined to run the code as proposed. */
  approve(code?: string): Promise<void>;
  reject(reason?: string): Promise<void>;
}

type Mode = 'choose' | 'edit' | 'reject' | 'sending' | 'closed';

export interface IApprovalCardOptions {
  languages: IEditorLanguageRegistry;
  /** JupyterLab's inline editor factory (`IEditorServices`); a textarea without one. */
  editorFactory?: CodeEditor.Factory | null;
  trans?: TranslationBundle;
}

/** Where the edited code is typed: a CodeMirror editor, or a plain textarea. */
interface ICodeInput {
  readonly value: string;
  setReadOnly(readOnly: boolean): void;
  focus(): void;
  dispose(): void;
}

export class ApprovalCard extends Widget {
  readonly cellId: string;
  private mode: Mode = 'choose';
  private readonly codeSlot: HTMLElement;
  private readonly actionsSlot: HTMLElement;
  private readonly messageSlot: HTMLElement;
  private editor: ICodeInput | null = null;
  private readonly languages: IEditorLanguageRegistry;
  private readonly trans: TranslationBundle;

  constructor(
    private readonly request: IApprovalRequested,
    private readonly actions: IApprovalActions,
    private readonly options: IApprovalCardOptions
  ) {
    super();
    this.languages = options.languages;
    const trans = (this.trans = options.trans ?? nullTranslator.load('kernelagent'));
    this.cellId = request.cell_id;
    this.addClass('jp-KernelAgent-approval');
    this.node.dataset.cellId = request.cell_id;
    this.codeSlot = h('div', { class: 'jp-KernelAgent-approvalCode' });
    this.actionsSlot = h('div', { class: 'jp-KernelAgent-actions' });
    this.messageSlot = h('div', { class: 'jp-KernelAgent-approvalMessage' });
    this.node.append(
      h('div', { class: 'jp-KernelAgent-approvalTitle' }, approvalQuestion(request.kind, trans)),
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
    const trans = this.trans;
    const by = event.decided_by || trans.__('someone');
    const text =
      event.decision === 'rejected'
        ? trans.__('Rejected by %1', by) + (event.reason ? `: ${event.reason}` : '')
        : event.decision === 'edited'
          ? trans.__('Approved with edits by %1', by)
          : trans.__('Approved by %1', by);
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
    const { request, trans } = this;
    this.messageSlot.textContent = '';
    this.editor?.dispose();
    this.editor = null;
    if (this.mode === 'edit') {
      const host = h('div', { class: 'jp-KernelAgent-editor' });
      this.codeSlot.replaceChildren(host);
      const editor = this.codeInput(host, request.code);
      this.editor = editor;
      this.actionsSlot.replaceChildren(
        button({
          label: trans.__('Approve edited'),
          icon: checkIcon,
          kind: 'accept',
          onClick: () => this.send(() => this.actions.approve(editor.value))
        }),
        button({ label: trans.__('Cancel'), onClick: () => this.setMode('choose') })
      );
      editor.focus();
      return;
    }
    this.codeSlot.replaceChildren(codeBlock(this.languages, request.code, request.kind));
    if (this.mode === 'reject') {
      const reason = h('input', {
        class: 'jp-mod-styled jp-KernelAgent-input',
        type: 'text',
        placeholder: trans.__('Why? (the model reads this)'),
        'aria-label': trans.__('Reason for rejecting')
      });
      const confirm = () => this.send(() => this.actions.reject(reason.value.trim()));
      reason.addEventListener('keydown', event => {
        if (event.key === 'Enter') {
          confirm();
        }
      });
      this.actionsSlot.replaceChildren(
        reason,
        button({ label: trans.__('Reject'), icon: closeIcon, kind: 'reject', onClick: confirm }),
        button({ label: trans.__('Cancel'), onClick: () => this.setMode('choose') })
      );
      reason.focus();
      return;
    }
    if (this.mode === 'choose') {
      this.actionsSlot.replaceChildren(
        button({
          label: trans.__('Approve'),
          icon: checkIcon,
          kind: 'accept',
          onClick: () => this.send(() => this.actions.approve())
        }),
        button({ label: trans.__('Edit'), icon: editIcon, onClick: () => this.setMode('edit') }),
        button({
          label: trans.__('Reject'),
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
    this.editor?.setReadOnly(true);
    try {
      await call();
      if (this.mode !== 'closed') {
        this.mode = 'sending';
        this.actionsSlot.replaceChildren();
        this.messageSlot.textContent = this.trans.__('Sent; waiting for the agent…');
      }
    } catch (error) {
      buttons.forEach(element => element.removeAttribute('disabled'));
      this.editor?.setReadOnly(false);
      this.mode = previous;
      this.messageSlot.textContent = this.trans.__(
        'Could not send the decision: %1',
        errorText(error)
      );
    }
  }

  /** The editor for the edited code: CodeMirror when JupyterLab gave a factory. */
  private codeInput(host: HTMLElement, code: string): ICodeInput {
    const label = this.trans.__('Edited code');
    const factory = this.options.editorFactory;
    if (!factory) {
      const area = h('textarea', {
        class: 'jp-KernelAgent-textEditor',
        spellcheck: 'false',
        'aria-label': label
      });
      area.value = code;
      area.rows = Math.min(20, code.split('\n').length + 1);
      host.append(area);
      return {
        get value() {
          return area.value;
        },
        setReadOnly: readOnly => (area.readOnly = readOnly),
        focus: () => area.focus(),
        dispose: () => area.remove()
      };
    }
    const mimeType = this.request.kind === 'shell' ? 'text/x-sh' : 'text/x-ipython';
    const model = new CodeEditor.Model({ mimeType });
    model.sharedModel.setSource(code);
    const editor = factory({ host, model, config: { lineNumbers: false }, inline: true });
    host.querySelector('.cm-content')?.setAttribute('aria-label', label);
    return {
      get value() {
        return model.sharedModel.getSource();
      },
      setReadOnly: readOnly => editor.setOption('readOnly', readOnly),
      focus: () => editor.focus(),
      dispose: () => {
        editor.dispose();
        model.dispose();
      }
    };
  }
}
