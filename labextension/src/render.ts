/**
 * Rendering helpers shared by the views: highlighted code and markdown.
 */
import { IEditorLanguageRegistry, jupyterHighlightStyle } from '@jupyterlab/codemirror';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';
import { StyleModule } from 'style-mod';

import { CellKind } from './api';
import { h } from './dom';

let highlightStyleMounted = false;

/**
 * Make sure the CSS of JupyterLab's syntax highlighting is in the page.
 *
 * CodeMirror mounts it with the first editor; the panel may be shown before any
 * editor exists, so mount it ourselves (mounting twice is harmless).
 */
function mountHighlightStyle(): void {
  if (!highlightStyleMounted && jupyterHighlightStyle.module) {
    StyleModule.mount(document, jupyterHighlightStyle.module);
    highlightStyleMounted = true;
  }
}

/**
 * A `<pre>` with the code highlighted the way JupyterLab's editors do (theme colours).
 *
 * Shell actions are recorded as `%%bash` cells: the magic line is shown as such and
 * the rest is highlighted as shell.
 */
export function codeBlock(
  languages: IEditorLanguageRegistry,
  code: string,
  kind: CellKind | 'host_tool'
): HTMLPreElement {
  mountHighlightStyle();
  const pre = h('pre', { class: 'jp-KernelAgent-code' });
  let body = code;
  const languageOf = { python: 'python', shell: 'shell', host_tool: 'json' };
  let language = languageOf[kind];
  const magic = /^%%(bash|sh)[^\n]*\n?/.exec(code);
  if (magic) {
    pre.append(h('span', { class: 'jp-KernelAgent-magic' }, magic[0]));
    body = code.slice(magic[0].length);
    language = 'shell';
  }
  const target = h('code', {});
  pre.append(target);
  languages.highlight(body, languages.findBest(language), target).catch(() => {
    target.textContent = body;
  });
  return pre;
}

/** Markdown (e.g. the model's text) rendered by JupyterLab's markdown renderer. */
export function markdownWidget(rendermime: IRenderMimeRegistry, text: string): Widget {
  const renderer = rendermime.createRenderer('text/markdown');
  renderer.addClass('jp-KernelAgent-markdown');
  // The model's text is not trusted: the renderer sanitizes any HTML in it.
  void renderer.renderModel(new MimeModel({ data: { 'text/markdown': text }, trusted: false }));
  return renderer;
}
