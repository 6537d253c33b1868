/**
 * Session statuses and attempt notes as the person reads them (translated).
 */
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';

import type { IAttemptFinished, IAttemptStarted, SessionStatus } from './api';
import { h, spinner } from './dom';

export const ENGLISH = nullTranslator.load('kernelagent');

/** A session status as the person reads it. */
export function statusLabel(status: SessionStatus, trans: TranslationBundle = ENGLISH): string {
  const labels: Record<SessionStatus, string> = {
    starting: trans.__('starting'),
    running: trans.__('running'),
    awaiting_approval: trans.__('awaiting approval'),
    paused: trans.__('paused'),
    completed: trans.__('completed'),
    failed: trans.__('failed'),
    interrupted: trans.__('interrupted')
  };
  return labels[status] ?? status;
}

/** A status badge; `starting`/`running` get a spinner. */
export function statusBadge(
  status: SessionStatus,
  trans: TranslationBundle = ENGLISH
): HTMLElement {
  const badge = h(
    'span',
    { class: `jp-KernelAgent-badge jp-KernelAgent-badge-${status}` },
    statusLabel(status, trans)
  );
  if (status === 'running' || status === 'starting') {
    badge.prepend(spinner());
  }
  return badge;
}

/** What the view says when a parallel attempt starts or ends. */
export function attemptNote(
  event: IAttemptStarted | IAttemptFinished,
  trans: TranslationBundle = ENGLISH
): string {
  if (event.type === 'attempt_started') {
    return event.temperature === null
      ? trans.__('Attempt %1 of %2 started.', event.number, event.of)
      : trans.__(
          'Attempt %1 of %2 started at temperature %3.',
          event.number,
          event.of,
          event.temperature
        );
  }
  if (event.answer !== null) {
    return event.grounded
      ? trans.__('Attempt %1 answered %2.', event.number, JSON.stringify(event.answer))
      : trans.__(
          'Attempt %1 answered %2 (not in its outputs).',
          event.number,
          JSON.stringify(event.answer)
        );
  }
  return event.reason
    ? trans.__('Attempt %1 %2: %3.', event.number, event.status, event.reason)
    : trans.__('Attempt %1 %2.', event.number, event.status);
}
