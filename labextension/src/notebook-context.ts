/**
 * What the agent is told about the notebook it is asked to work in: its cells, a summary
 * of their outputs, and the kernel's variables (types, shapes, columns), which an
 * inspection snippet run in the notebook's own kernel reports.
 */
import type * as nbformat from '@jupyterlab/nbformat';
import type { NotebookPanel } from '@jupyterlab/notebook';

import type { IKernelVariable, INotebookCellSummary } from './api';

/** Defines `_kernelagent_inspect()`: the user's variables as base64-encoded JSON. */
export const INSPECT_SNIPPET = `
def _kernelagent_inspect():
    import base64, json, types
    shell = get_ipython()
    hidden = set(getattr(shell, "user_ns_hidden", {}))
    skip = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)
    found = []
    for name, value in list(shell.user_ns.items()):
        if name.startswith("_") or name in hidden or name in ("In", "Out", "exit", "quit"):
            continue
        if isinstance(value, skip):
            continue
        item = {"name": name, "type": type(value).__name__}
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(size, int) for size in shape):
            item["shape"] = list(shape)
        columns = getattr(value, "columns", None)
        try:
            if columns is not None:
                item["columns"] = [str(column) for column in list(columns)[:60]]
                item["dtypes"] = [str(dtype) for dtype in list(value.dtypes)[:60]]
            elif hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
                item["length"] = len(value)
        except Exception:
            pass
        if isinstance(value, (int, float, bool, str)):
            item["summary"] = repr(value)[:120]
        found.append(item)
        if len(found) >= 150:
            break
    shell.user_ns.pop("_kernelagent_inspect", None)
    return base64.b64encode(json.dumps(found).encode()).decode()
`;

const OUTPUT_CHARS = 400;

/** The kernel's variables, by running the inspection snippet in it (silently). */
export async function inspectKernel(panel: NotebookPanel): Promise<IKernelVariable[]> {
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    return [];
  }
  const future = kernel.requestExecute({
    code: INSPECT_SNIPPET,
    silent: true,
    store_history: false,
    user_expressions: { variables: '_kernelagent_inspect()' }
  });
  const reply = await future.done;
  const content = reply.content as any;
  const result = content?.user_expressions?.variables;
  const text: string | undefined = result?.data?.['text/plain'];
  if (content?.status !== 'ok' || result?.status !== 'ok' || !text) {
    return [];
  }
  try {
    return JSON.parse(atob(text.replace(/^'|'$/g, ''))) as IKernelVariable[];
  } catch {
    return [];
  }
}

/** A plain-text summary of a cell's outputs. */
export function summariseOutputs(outputs: nbformat.IOutput[]): string {
  const parts: string[] = [];
  for (const output of outputs) {
    if (output.output_type === 'stream') {
      parts.push(joined((output as nbformat.IStream).text));
    } else if (output.output_type === 'error') {
      const error = output as nbformat.IError;
      parts.push(`${error.ename}: ${error.evalue}`);
    } else {
      const data = (output as nbformat.IExecuteResult).data ?? {};
      if (data['text/plain'] !== undefined) {
        parts.push(joined(data['text/plain'] as string | string[]));
      } else {
        parts.push(`[${Object.keys(data).join(', ')}]`);
      }
    }
  }
  const text = parts.join('\n').trim();
  return text.length > OUTPUT_CHARS ? text.slice(0, OUTPUT_CHARS) + ' …' : text;
}

/** The notebook's cells, as the server's NotebookCellSummary. */
export function summariseCells(panel: NotebookPanel): INotebookCellSummary[] {
  const cells: INotebookCellSummary[] = [];
  const model = panel.content.model;
  if (!model) {
    return cells;
  }
  for (const cell of model.sharedModel.cells) {
    const json = cell.toJSON() as nbformat.ICell;
    const summary: INotebookCellSummary = {
      cell_type: json.cell_type as 'code' | 'markdown' | 'raw',
      source: joined(json.source),
      kernelagent: Boolean((json.metadata as any)?.kernelagent)
    };
    if (json.cell_type === 'code') {
      const code = json as nbformat.ICodeCell;
      summary.outputs = summariseOutputs(code.outputs ?? []);
      summary.execution_count = code.execution_count ?? null;
    }
    cells.push(summary);
  }
  return cells;
}

function joined(text: string | string[]): string {
  return Array.isArray(text) ? text.join('') : text;
}
