/**
 * A titled section of the panel that folds away with a caret, like JupyterLab's
 * sidebar sections.
 */
import { caretDownIcon, caretRightIcon, Toolbar } from '@jupyterlab/ui-components';
import { Panel, Widget } from '@lumino/widgets';

import { h } from './dom';

export class Section extends Panel {
  private readonly toggle: HTMLButtonElement;
  private open = true;

  constructor(
    title: string,
    private readonly body: Widget,
    tools: Widget[] = []
  ) {
    super();
    this.addClass('jp-KernelAgent-section');
    this.toggle = h('button', { type: 'button', class: 'jp-KernelAgent-toggle' });
    this.toggle.addEventListener('click', () => this.setOpen(!this.open));
    const header = new Panel();
    header.addClass('jp-KernelAgent-sectionHeader');
    header.addWidget(new Widget({ node: this.toggle }));
    const toolbar = new Toolbar();
    toolbar.addClass('jp-KernelAgent-sectionTools');
    tools.forEach((tool, index) => toolbar.addItem(`tool-${index}`, tool));
    header.addWidget(toolbar);
    this.toggle.dataset.title = title;
    this.addWidget(header);
    this.addWidget(body);
    this.setOpen(true);
  }

  setOpen(open: boolean): void {
    this.open = open;
    this.body.setHidden(!open);
    this.toggle.setAttribute('aria-expanded', String(open));
    this.toggle.replaceChildren(
      (open ? caretDownIcon : caretRightIcon).element({
        tag: 'span',
        className: 'jp-KernelAgent-caret'
      }),
      h('span', {}, this.toggle.dataset.title ?? '')
    );
  }
}
