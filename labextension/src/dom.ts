/**
 * Small helpers to build DOM without a framework.
 */
import { LabIcon } from '@jupyterlab/ui-components';

type Child = Node | string | null | undefined | false;

/** `h('div', {class: 'x', title: 'y'}, child, 'text')` -> an element. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) {
      continue;
    }
    element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children) {
    if (child) {
      element.append(child);
    }
  }
  return element;
}

export interface IButtonOptions {
  label: string;
  onClick: () => void;
  icon?: LabIcon;
  title?: string;
  /** 'accept' (brand colour), 'reject' (red), 'warn', or a plain button. */
  kind?: 'accept' | 'reject' | 'warn' | 'plain';
  className?: string;
}

/** A JupyterLab-styled button (`jp-mod-styled`), as in dialogs. */
export function button(options: IButtonOptions): HTMLButtonElement {
  const kind = options.kind ?? 'plain';
  const classes = ['jp-Button', 'jp-mod-styled', 'jp-KernelAgent-button'];
  if (kind !== 'plain') {
    classes.push(`jp-mod-${kind}`);
  }
  if (options.className) {
    classes.push(options.className);
  }
  const element = h('button', {
    type: 'button',
    class: classes.join(' '),
    title: options.title
  });
  if (options.icon) {
    element.append(
      options.icon.element({
        className: 'jp-KernelAgent-buttonIcon',
        tag: 'span',
        elementPosition: 'center',
        height: '14px',
        width: '14px'
      })
    );
  }
  element.append(h('span', {}, options.label));
  element.addEventListener('click', () => options.onClick());
  return element;
}

/** A spinning circle, for what is running now. */
export function spinner(title = 'running'): HTMLElement {
  return h('span', { class: 'jp-KernelAgent-spinner', title, role: 'status' });
}

/** The message of an error, whatever was thrown. */
export function errorText(error: unknown): string {
  if (error instanceof Error) {
    const hint = (error as { hint?: string }).hint;
    return hint ? `${error.message} (${hint})` : error.message;
  }
  return String(error);
}

/** "3 s", "2 min 5 s". */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 60) {
    return `${Math.round(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

/** "just now", "5 min ago", or a date, for a unix time in seconds. */
export function formatAgo(unixSeconds: number): string {
  const seconds = Date.now() / 1000 - unixSeconds;
  if (seconds < 45) {
    return 'just now';
  }
  if (seconds < 3600) {
    return `${Math.round(seconds / 60)} min ago`;
  }
  if (seconds < 86400) {
    return `${Math.round(seconds / 3600)} h ago`;
  }
  return new Date(unixSeconds * 1000).toLocaleDateString();
}
